"""Ten 2024 FAIR methods that move LLM computation or supervision into latent or self-generated space: BLT, Coconut, LPO, ScPO, TPO, Backtracking, Source2Synth, back-and-forth translation, Self-Taught Evaluators, ALMA

Modules:

- `latent_lm.backtrack.app`: `latent-lm backtrack fit | generate | eval`: a model that knows unsafe answers, baseline and backtracking safety training at the same data budget, DPO, reset-aware generation, and the prefilling-attack evaluation.
- `latent_lm.backtrack.data`: Add a `[RESET]` token to any Hugging Face causal LM, a toy safety domain with an exact rule, and the paper's SFT (unsafe prefix as context only) and DPO pair recipes, trained through the shared SFT and preference modules.
- `latent_lm.backtrack.eval`: Judge the visible text of reset-aware generations (a rule judge and an LLM judge through the shared Judge interface), attack with prefilled unsafe starts, and sweep the logit bias on [RESET].
- `latent_lm.thought.app`: The command that runs the thinking model and its direct baseline side by side, the pictures of a run (thought length and win rate by iteration; one example's thought and response across iterations), the registry entry and the tour section.
- `latent_lm.thought.core`: Wu et al. 2024, "Thinking LLMs: General Instruction Following with Thought Generation" (arXiv 2410.10630): a model is prompted to write hidden thoughts before its response; a judge scores the response alone; the best and worst full outputs (thought + response) of each prompt become a DPO pair. The thoughts are never judged, so the model learns whatever thinking leads to better responses.
- `latent_lm.thought.run`: The paper's iterations on the shared rounds loop (`latent_lm.rounds.RoundLoop`): sample K thought + response outputs per instruction, judge the responses alone, pair the best and worst full outputs, train DPO, repeat with fresh instructions. The direct-response baseline runs the same loop with the same prompts, samples, judge and training, only without the thought prompt, so every comparison is like for like."""

__version__ = "0.0.1"
