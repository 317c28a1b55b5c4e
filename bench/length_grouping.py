"""Benchmark: does grouping training batches by length (`group_by_length=True`, `latent_lm.train.LengthGroupedSampler`)
cut the padding and the training time on records of mixed lengths, as the shared rounds loop needs it to?

Records: `{prompt, completion}` pairs whose prompts are passages of 8 to 240 words (as table- or document-grounded
methods such as Source2Synth train on), completions of 2 to 12 words; a byte-level tiny Llama (d_model 128, 4 layers);
SFT with `SFTModule` through `make_trainer`, batch 8, one thread. Arms: the same data module with and without
`group_by_length`; rounds alternate which arm runs first, each round a fresh model; time per arm = wall-clock of
`Trainer.fit` for a fixed number of steps. Premise: the record lengths do vary (otherwise nothing can be gained).
Positive control: the padded share of the tokens in an epoch's batches, computed from the batches themselves, must
fall with grouping. Negative control: on records that all have the same length, grouping must not change the time
(ratio within 0.9-1.1).

Run: python bench/length_grouping.py   (writes bench/results/length_grouping.json and .md)
"""
from __future__ import annotations
import argparse, random, statistics, time

from _common import bench_env, machine_info, write_results
bench_env()

import torch

CLAIM = ("Batching records of similar length together cuts the padded tokens and the training time of the shared SFT/DPO "
         "step on mixed-length records: 'reproduced' if the median time ratio grouped/plain is <= 0.8 and the padded share "
         "of the batch tokens falls by at least half; 'partial' if only the padding falls; 'not reproduced' otherwise.")


def records(n: int, seed: int, fixed: int | None = None) -> list[dict]:
    rng = random.Random(seed)
    words = "the of table row column value city year total name score team river north south price count".split()
    text = lambda k: " ".join(rng.choice(words) for _ in range(k))
    return [{"prompt": text(fixed or rng.randint(8, 240)), "completion": text(fixed and 4 or rng.randint(2, 12))} for _ in range(n)]


def padded_share(dm) -> float:
    dm.setup("fit")
    tot = pad = 0
    for b in dm.train_dataloader():
        tot += b["input_ids"].numel(); pad += int((b["attention_mask"] == 0).sum())
    return pad / tot


def fit_seconds(recs, group: bool, steps: int, seed: int) -> float:
    from latent_lm.lm import tiny_lm
    from latent_lm.prefs import SFTModule, SFTDataModule
    from latent_lm.train import make_trainer
    import tempfile
    model, tok = tiny_lm(vocab="bytes", d_model=128, n_layers=4, n_heads=4, max_len=2048, seed=seed)
    sm = SFTModule(model, lr=1e-3, save_hf=False)
    dm = SFTDataModule(recs, tok, batch_size=8, chat=False, seed=seed, group_by_length=group)
    with tempfile.TemporaryDirectory() as d:
        tr = make_trainer(default_root_dir=d, logger=False, enable_checkpointing=False, max_steps=steps, accelerator="cpu")
        t0 = time.perf_counter(); tr.fit(sm, dm); return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from latent_lm.lm import tiny_lm
    from latent_lm.prefs import SFTDataModule
    mixed, same = records(400, 0), records(400, 0, fixed=60)
    _, tok = tiny_lm(vocab="bytes", d_model=128, n_layers=4, n_heads=4, max_len=2048, seed=0)
    lens = [len(tok(r["prompt"] + r["completion"])["input_ids"]) for r in mixed]
    share = {g: padded_share(SFTDataModule(mixed, tok, batch_size=8, chat=False, seed=0, group_by_length=g)) for g in (False, True)}
    times = {k: {False: [], True: []} for k in ("mixed", "same")}
    for r in range(args.rounds):
        for kind, recs in (("mixed", mixed), ("same", same)):
            for g in ((False, True) if r % 2 == 0 else (True, False)):
                times[kind][g].append(fit_seconds(recs, g, args.steps, r))
                print(f"round {r} {kind} group={g}: {times[kind][g][-1]:.1f}s", flush=True)
    ratio = {k: statistics.median(a / b for a, b in zip(times[k][True], times[k][False])) for k in times}
    pad_drop = 1 - share[True] / share[False]
    verdict = ("reproduced" if ratio["mixed"] <= 0.8 and pad_drop >= 0.5 else "partial" if pad_drop >= 0.5 else "not reproduced")
    cv = statistics.pstdev(lens) / statistics.mean(lens)
    cmd = "python bench/length_grouping.py" + (f" --rounds {args.rounds}" if args.rounds != 3 else "") + (f" --steps {args.steps}" if args.steps != 30 else "")
    res = {
        "claim": CLAIM, "command": cmd,
        "setup": {"records": 400, "prompt_words": [8, 240], "completion_words": [2, 12], "model": "tiny Llama, bytes, d128, 4 layers",
                  "batch_size": 8, "steps_per_fit": args.steps, "rounds": args.rounds, "machine": machine_info()},
        "arms": {f"{k}_{'grouped' if g else 'plain'}": {"seconds": times[k][g], "median_s": statistics.median(times[k][g])}
                 for k in times for g in (False, True)},
        "verdict": verdict,
        "premise": {"what": "the record lengths vary (coefficient of variation of tokens per record >= 0.3)",
                    "numbers": {"min_tokens": min(lens), "max_tokens": max(lens), "mean_tokens": statistics.mean(lens), "cv": cv},
                    "holds": cv >= 0.3},
        "positive_control": {"what": "the padded share of an epoch's batch tokens falls by at least half with grouping",
                             "numbers": {"plain": share[False], "grouped": share[True], "relative_drop": pad_drop}, "shows": pad_drop >= 0.5},
        "notes": ("Time ratios are medians over rounds of grouped/plain, measured in one process with alternating order, so the "
                  "machine's load cancels to first order. Negative control (records of one length, nothing to gain): median ratio "
                  f"{ratio['same']:.2f}. The saving grows with the spread of the lengths and the cost per token; with equal lengths it is nil."),
        "ratios": ratio,
    }
    md = (f"# Length-grouped batches\n\n**Claim.** {CLAIM}\n\nCommand: `{cmd}`\n\n"
          f"| records | plain s (median) | grouped s (median) | grouped/plain | padded share plain | padded share grouped |\n|---|---|---|---|---|---|\n"
          f"| mixed lengths | {res['arms']['mixed_plain']['median_s']:.1f} | {res['arms']['mixed_grouped']['median_s']:.1f} | {ratio['mixed']:.2f} | {share[False]:.2f} | {share[True]:.2f} |\n"
          f"| one length (negative control) | {res['arms']['same_plain']['median_s']:.1f} | {res['arms']['same_grouped']['median_s']:.1f} | {ratio['same']:.2f} | - | - |\n\n"
          f"**Premise** (holds: {res['premise']['holds']}): tokens per record {min(lens)}-{max(lens)}, CV {cv:.2f}.\n\n"
          f"**Verdict: {verdict}.**\n\n{res['notes']}\n")
    write_results("length_grouping", res, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
