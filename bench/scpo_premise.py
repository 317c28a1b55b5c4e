"""Premise probe for ScPO (issue 20, item 1): in which regime does the vote carry signal?

ScPO learns from the model's own majority votes, so it can only work where (a) the majority answer of k samples is right
more often than the greedy answer (SC@k - greedy > 0) and (b) the vote share predicts correctness (Somers' D between
the majority's vote share and whether the majority is right; paper at k=8: GSM8K 0.80, MATH 0.68). The first ScPO
benchmark used a seed model stopped early at 40% dev accuracy: SC@8 0.443 vs greedy 0.422, Somers' D 0.38 -- nothing to
learn from. This script measures both quantities over a grid, so that the decisive benchmark can start from a seed
model where the premise holds as in the paper:

* seed models: small Llama-style models trained from scratch (latent_lm.tasks machinery: the task tokenizer, SFT on
  every valid derivation of each worked solution) on problems of mixed length, at a few sizes; each model is
  snapshotted at several pretraining budgets (one training run per size, snapshots along the way);
* task difficulty: the number of arithmetic steps of the held-out problems;
* sampling temperature (one model snapshot is reused across temperatures and difficulties).

Every setting tried is recorded (bench/results/scpo_premise.json, .md). The pick rule, stated before the numbers:
among settings with greedy accuracy in [0.2, 0.6] (the paper's seed-model regime), the one with the largest
SC@8 - greedy whose Somers' D >= 0.6; 'holds' if that gain is > 2 standard errors of a paired difference.

Run: nice -n 10 python bench/scpo_premise.py --quick
"""
from __future__ import annotations
import argparse, json, math, sys, time
from pathlib import Path

from _common import ROOT, bench_env, machine_info, write_results
bench_env()

import torch

PICK_RULE = ("Among settings whose seed-model greedy accuracy is in [0.2, 0.6] (the paper's seed-model regime), pick the one "
             "with the largest SC@8 - greedy among those with Somers' D >= 0.6 (vote share of the majority answer vs its "
             "correctness; paper at k=8: GSM8K 0.80, MATH 0.68); the premise holds there if SC@8 - greedy exceeds 2 standard "
             "errors of the paired difference.")

TRAIN_DIFF = {"n_steps": (1, 5), "ops": "+-", "max_start": 15, "max_operand": 9}
# Seed-model regimes: the difficulty a model is trained on. 'small_1-5' is the first probe's (tested at fixed step counts,
# including ones it was not trained on); the others are tested on their own training distribution ("n_steps" = "train"),
# as the ScPO benchmark does (its seed model, round problems and test problems share one difficulty).
REGIMES = {
    "small_1-5": TRAIN_DIFF,
    "small_4-6": {"n_steps": (4, 6), "ops": "+-", "max_start": 15, "max_operand": 9},
    "big_2-4": {"n_steps": (2, 4), "ops": "+-", "max_start": 99, "max_operand": 49},
    "big_3-4": {"n_steps": (3, 4), "ops": "+-", "max_start": 99, "max_operand": 49},
    "mid_3-5": {"n_steps": (3, 5), "ops": "+-", "max_start": 50, "max_operand": 30},
    "small_3": {"n_steps": 3, "ops": "+-", "max_start": 15, "max_operand": 9},     # a test difficulty of small_1-5 models (benchmark)
}


def probe(gen, tok_name, problems, temperature, k, seed, work: Path) -> dict:
    "Greedy and SC@k accuracy on `problems` at `temperature`, plus Somers' D of the majority's vote share vs its correctness."
    from latent_lm.tasks import evaluate_answers
    from latent_lm.core import read_jsonl
    from latent_lm.scpo.vote import somers_d
    out = work / f"{tok_name}_T{temperature}.jsonl"
    m = evaluate_answers(gen, problems, template="{question}", k=k, temperature=temperature, max_new_tokens=96, seed=seed,
                         out=out, chunk_size=64, desc=tok_name)
    recs = read_jsonl(out)
    share = [r["votes"] / k for r in recs]
    maj = [float(r["sc_correct"]) for r in recs]
    d = [float(r["sc_correct"]) - float(r["greedy_correct"]) for r in recs]
    n = len(d); mean_d = sum(d) / n
    se_d = math.sqrt(sum((x - mean_d) ** 2 for x in d) / max(n - 1, 1) / n)
    return {"greedy": m["greedy_accuracy"], "sc8": m["sc_accuracy"], "sample_accuracy": m["sample_accuracy"], "sc_gain": mean_d,
            "sc_gain_se": se_d, "somers_d": somers_d(share, maj), "mean_vote_share": sum(share) / n, "n_test": n}


def train_snapshots(size: dict, budgets: list[int], seed: int, work: Path, n_problems: int, log, regime: str = "small_1-5") -> dict[int, Path]:
    "Train one tiny model from scratch (SFT on every derivation) for max(budgets) steps, exporting a snapshot at each budget."
    from latent_lm.lm import tiny_lm
    from latent_lm.tasks import arithmetic_problems, arithmetic_tokenizer, sft_records, sft_from_scratch
    from latent_lm.train import save_pretrained_atomic
    name = f"d{size['d_model']}_L{size['n_layers']}" + ("" if regime == "small_1-5" else f"_{regime}")
    snaps = {b: work / name / f"step{b}" for b in budgets}
    if all((p / "config.json").exists() for p in snaps.values()): return snaps
    done = [b for b in sorted(snaps) if (snaps[b] / "config.json").exists()]
    offset = done[-1] if done else 0
    if done:      # continue from the latest snapshot (a killed run): the weights carry on, the optimizer state starts afresh
        from latent_lm.lm import load_lm
        model, tok = load_lm(str(snaps[offset]))
        log(f"  {name}: continuing from the step-{offset} snapshot (fresh optimizer state)")
    else:
        tok = arithmetic_tokenizer()
        model, tok = tiny_lm(d_model=size["d_model"], n_layers=size["n_layers"], n_heads=4, max_len=256, seed=seed, tokenizer=tok)
    recs = sft_records(arithmetic_problems(n_problems, seed=seed + 1000, **REGIMES[regime]), "{question}", "all")
    t0 = time.time()

    todo = {b - offset: snaps[b] for b in budgets if b > offset and not (snaps[b] / "config.json").exists()}
    sft_from_scratch(model, tok, recs, work / name / "final", max(budgets) - offset, 3e-3, 32, seed=seed + offset, snapshots=todo,
                     on_snapshot=lambda s, d: log(f"  {name}: snapshot at step {s + offset} ({time.time() - t0:.0f}s)"))
    if not (snaps[max(budgets)] / "config.json").exists():
        (snaps[max(budgets)]).parent.mkdir(parents=True, exist_ok=True)
        save_pretrained_atomic(snaps[max(budgets)], model.eval(), tok)
    return snaps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/scpo_premise")
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--budgets", type=int, nargs="+", default=None, help="pretraining steps at which to snapshot and probe")
    ap.add_argument("--n-steps", type=int, nargs="+", default=None, help="difficulties (arithmetic steps) to probe")
    ap.add_argument("--temperatures", type=float, nargs="+", default=None)
    ap.add_argument("--regime", default="small_1-5", choices=sorted(REGIMES), help="training difficulty of the seed model")
    ap.add_argument("--n-problems", type=int, default=4000, help="training problems (every derivation of each)")
    ap.add_argument("--write-only", action="store_true", help="rewrite the results from the rows measured so far (work/rows.json)")
    args = ap.parse_args(argv)
    if args.write_only:
        rows = all_rows(Path(args.work))
        return write(rows, args, rows[0]["n_test"], 8, None) or 0
    from latent_lm.lm import load_lm
    from latent_lm.generate import HFGenerator
    from latent_lm.tasks import arithmetic_problems
    torch.set_num_threads(1)
    work = Path(args.work); work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    log = lambda s: print(f"[{time.time() - t_start:6.0f}s] {s}", flush=True)
    sizes = [{"d_model": 64, "n_layers": 4}] + ([] if args.quick else [{"d_model": 128, "n_layers": 4}])
    budgets = args.budgets or ([400, 1000] if args.quick else [400, 1000, 2000, 4000])
    steps_list = args.n_steps or (["train"] if args.regime != "small_1-5" else [3, 5] if args.quick else [3, 4, 5, 6])
    diff = REGIMES[args.regime]
    temps = args.temperatures or ([0.5, 0.8, 1.1] if args.quick else [0.5, 0.7, 0.9, 1.1])
    n_test = args.n_test or (150 if args.quick else 400)
    k = 8
    train_q = {p["question"] for p in arithmetic_problems(args.n_problems, seed=args.seed + 1000, **diff)}
    steps_list = [s if s == "train" else int(s) for s in steps_list]
    tests = {s: arithmetic_problems(n_test, seed=args.seed + 2000 + (0 if s == "train" else s), exclude=train_q,
                                    **(diff if s == "train" else {**diff, "n_steps": s})) for s in steps_list}
    out_json = work / ("rows.json" if args.regime == "small_1-5" else f"rows_{args.regime}.json")   # one file per regime (runs may go in parallel)
    rows = json.loads(out_json.read_text()) if out_json.exists() else []    # rows of earlier (partial) runs are kept
    same = lambda a, b: all(a.get(f, "small_1-5") == b.get(f, "small_1-5") for f in ("regime", "d_model", "n_layers", "pretrain_steps", "n_steps", "temperature"))
    for size in sizes:
        snaps = train_snapshots(size, budgets, args.seed, work, args.n_problems, log, args.regime)
        for b, path in snaps.items():
            model, tok = load_lm(str(path))
            gen = HFGenerator(model, tok, batch_size=256)
            for s in steps_list:
                for T in temps:
                    t1 = time.time()
                    r = probe(gen, f"{args.regime}_d{size['d_model']}_L{size['n_layers']}_step{b}_n{s}", tests[s], T, k, args.seed, work / "evals")
                    row = {"regime": args.regime, "difficulty": {**diff, "n_steps": list(diff["n_steps"]) if s == "train" else s}, "d_model": size["d_model"], "n_layers": size["n_layers"], "pretrain_steps": b, "n_steps": s,
                           "temperature": T, **r, "seconds": time.time() - t1}
                    rows = [x for x in rows if not same(x, row)] + [row]
                    out_json.write_text(json.dumps(rows, indent=1))
                    log(f"{args.regime} d{size['d_model']} step{b} n_steps={s} T={T}: greedy {r['greedy']:.3f} SC@8 {r['sc8']:.3f} "
                        f"gain {r['sc_gain']:+.3f}±{r['sc_gain_se']:.3f} D {r['somers_d']:.2f}")
    write(all_rows(work), args, n_test, k, time.time() - t_start)


def all_rows(work: Path) -> list[dict]:
    "Every row measured in `work`, over all regimes (each regime's run keeps its own rows file)."
    rows = []
    for f in sorted(work.glob("rows*.json")):
        rows += [{"regime": "small_1-5", **r} for r in json.loads(f.read_text())]
    return rows


# The invocations that produced bench/results/scpo_premise.*, in order (rows accumulate in one work folder, --work).
INVOCATIONS = [
    "python bench/scpo_premise.py --quick", "python bench/scpo_premise.py --budgets 400",
    "python bench/scpo_premise.py --budgets 1000 --n-steps 3 5 --temperatures 0.5 0.8 1.1",
    "python bench/scpo_premise.py --budgets 1000 1800 --n-steps 3 --temperatures 0.3 0.5 0.8",
    "python bench/scpo_premise.py --budgets 1800 --n-steps 5 4 --temperatures 0.8 0.5",
    "python bench/scpo_premise.py --budgets 1800 --n-steps 6 7 --temperatures 0.5 0.8",
    "nice -n 10 python bench/scpo_premise.py --regime big_2-4 --budgets 1000 2000 3000 4000 --temperatures 0.5 0.8 1.0 --n-test 200",
    "nice -n 10 python bench/scpo_premise.py --regime mid_3-5 --budgets 1000 2000 3000 4000 --temperatures 0.5 0.8 1.0 --n-test 200",
    "nice -n 10 python bench/scpo_premise.py --regime big_2-4 --budgets 1000 --temperatures 0.5 0.8 1.0 --n-test 200",
    "nice -n 10 python bench/scpo_premise.py --regime mid_3-5 --budgets 1000 --temperatures 0.5 0.8 1.0 --n-test 200",
    "nice -n 10 python bench/scpo_premise.py --write-only",
    "nice -n 8 python bench/scpo_premise.py --regime mid_3-5 --budgets 1000 2000 3000 --temperatures 0.5 0.8 1.0 --n-test 200",
    "nice -n 5 python bench/scpo_premise.py --quick --regime mid_3-5 --budgets 1000 2000 2500 --temperatures 0.5 0.8 1.0 --n-test 200",
    "nice -n 10 python bench/scpo_premise.py --write-only",
]
INVOCATION_NOTES = ("The first six invocations (last session, regime small_1-5; the first killed after its step-1000 snapshot, the second "
                    "mid-way; the step-1800 snapshot continued from step 1000 with a fresh optimizer state) probed with max_new_tokens=64; "
                    "the later ones with 96 (long answers of big-number problems). This session's two regime runs (big_2-4, mid_3-5) ran "
                    "in parallel on a heavily shared machine (about 0.3 CPU-seconds per training step, a tenth of a core each): both were "
                    "killed after their step-1000 snapshot (about 26 and 31 minutes), since step 2000 would have come too late for the "
                    "benchmark, and the two --budgets 1000 invocations probed those snapshots (then killed: without --quick the script "
                    "goes on to train a d_model=128 model, which had no time to finish). All invocations share one work folder (the default; "
                    "this session's ran in another one into which the earlier rows.json had been copied, which is equivalent). "
                    "Later that session, once the machine was quieter, the mid_3-5 run continued from its step-1000 snapshot (fresh "
                    "optimizer state) to steps 2000 and 3000 (it was stopped after the d_model=64 probes, when it began a d_model=128 "
                    "model). At step 2000 greedy was 0.23 with Somers' D 0.28-0.45; at step 3000 greedy was 0.62, just above the rule's "
                    "range, with SC@8 - greedy +0.13 to +0.14 and D 0.59-0.69. Seeing that, the step-2500 budget was added (a choice made "
                    "with those numbers in view; the rule itself is unchanged): it continued from the step-2000 snapshot with a fresh "
                    "optimizer state, in a folder holding copies of the step-1000 and step-2000 snapshots and their stored evaluations, "
                    "whose rows were then merged into the main work folder. ")


def fallback(rows):
    """If no setting meets the pick rule, the benchmark's seed model: among settings whose vote carries signal (Somers' D >= 0.6),
    the one with the largest SC@8 - greedy. Chosen after the last session's rows were known (the only model with D >= 0.6 is its
    step-1800 snapshot), so it is a choice made with the numbers in view; it does not make the premise hold."""
    ok = [r for r in rows if not math.isnan(r["somers_d"]) and r["somers_d"] >= 0.6]
    return max(ok, key=lambda r: r["sc_gain"]) if ok else None


def pick(rows):
    ok = [r for r in rows if 0.2 <= r["greedy"] <= 0.6 and not math.isnan(r["somers_d"]) and r["somers_d"] >= 0.6]
    return max(ok, key=lambda r: r["sc_gain"]) if ok else None


def write(rows, args, n_test, k, seconds):
    best = pick(rows)
    holds = bool(best and best["sc_gain"] > 2 * best["sc_gain_se"])
    prev = {"what": "the first ScPO bench's seed model (early-stopped at 40% dev accuracy, 3-step problems, T=0.7)",
            "greedy": 0.422, "sc8": 0.443, "somers_d": 0.38}
    arms = {f"{r['regime']}_d{r['d_model']}_step{r['pretrain_steps']}_n{r['n_steps']}_T{r['temperature']}":
            {"greedy": r["greedy"], "greedy_std": 0.0, "sc8": r["sc8"], "sc8_std": 0.0, "sc_gain": r["sc_gain"], "sc_gain_std": 0.0,
             "somers_d": r["somers_d"], "somers_d_std": 0.0, "seeds": [args.seed]} for r in rows}
    res = {
        "claim": "Premise of ScPO (not the method's claim): there is a seed-model regime where SC@8 clearly beats greedy and the "
                 "vote share predicts correctness as in the paper. " + PICK_RULE,
        "command": " ; ".join(INVOCATIONS),
        "setup": {"machine": machine_info(), "k": k, "n_test_by_regime": {r["regime"]: r["n_test"] for r in rows},
                  "regimes": {n: {**d, "n_steps": list(d["n_steps"]) if isinstance(d["n_steps"], tuple) else d["n_steps"]} for n, d in REGIMES.items()},
                  "seed_model": "tiny Llama-style model from scratch, task BPE tokenizer, SFT on every derivation of 4000 problems, lr 3e-3, batch 32",
                  "seconds": seconds},
        "arms": arms,
        "verdict": "reproduced" if holds else "not reproduced",
        "premise": {"what": "some probed setting meets the pick rule (greedy in [0.2, 0.6], Somers' D >= 0.6, SC@8 - greedy > 2 SE)",
                    "numbers": {"picked": best, "n_settings": len(rows)}, "holds": holds},
        "positive_control": {"what": "Somers' D of a vote share that is the correctness itself is 1 (metric sanity), and "
                                     "greedy accuracy rises with the pretraining budget (the models learn)",
                             "numbers": _control(rows), "shows": _control(rows)["ok"]},
        "notes": (INVOCATION_NOTES + "If no setting meets the rule, the benchmark (bench/scpo.py) starts from the fallback: among settings with "
                  "Somers' D >= 0.6, the largest SC@8 - greedy. That rule was written after the last session's rows were known, so it is "
                  "not a blind pick, and it does not make the premise hold (its greedy accuracy is above 0.6). "
                  "One training seed per model (this is a probe of regimes, not a comparison of arms, so every arm's _std is 0 and "
                  "the uncertainty shown is the paired standard error of SC@8 - greedy over the test problems). "
                  f"Previous seed model for comparison: {json.dumps(prev)}. Every setting tried is in `rows`. Rows accumulate "
                  "over invocations in the work folder (rows.json): a run with --budgets/--n-steps/--temperatures adds its settings, "
                  "and a snapshot run killed mid-way continues from its latest snapshot with a fresh optimizer state."),
        "rows": rows, "picked": best, "fallback": None if best else fallback(rows),
    }
    md = ["# ScPO premise probe", "", f"**Rule.** {PICK_RULE}", "", f"**Picked:** {json.dumps(best)}", "",
          f"**Premise holds in the picked regime: {holds}.**", "", f"**Fallback (when nothing is picked):** {json.dumps(None if best else fallback(rows))}", "", f"Commands (one work folder, in order): `{res['command']}`", "",
          "| regime | d_model | pretrain steps | n_steps | T | greedy | SC@8 | SC@8 - greedy (± SE) | Somers' D | mean vote share |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['regime']} | {r['d_model']} | {r['pretrain_steps']} | {r['n_steps']} | {r['temperature']} | {r['greedy']:.3f} | {r['sc8']:.3f} | "
                  f"{r['sc_gain']:+.3f} ± {r['sc_gain_se']:.3f} | {r['somers_d']:.2f} | {r['mean_vote_share']:.2f} |")
    md += ["", f"Test sets: {res['setup']['n_test_by_regime']} problems per setting; k = {k}. Regimes (training difficulty): {json.dumps(res['setup']['regimes'])}. " + res["notes"]]
    write_results("scpo_premise", res, "\n".join(md))


def _control(rows):
    from latent_lm.scpo.vote import somers_d
    d_self = somers_d([0, 1, 1, 0, 1], [0, 1, 1, 0, 1])
    by_budget = {}
    for r in rows: by_budget.setdefault((r["regime"], r["d_model"], r["n_steps"], r["temperature"]), []).append((r["pretrain_steps"], r["greedy"]))
    rising = [v[-1][1] > v[0][1] for v in (sorted(x) for x in by_budget.values()) if len(v) > 1]
    return {"somers_d_of_truth": d_self, "greedy_rises_with_budget_fraction": (sum(rising) / len(rising)) if rising else None,
            "ok": bool(d_self == 1.0 and rising and sum(rising) / len(rising) > 0.5)}


if __name__ == "__main__":
    sys.exit(main())
