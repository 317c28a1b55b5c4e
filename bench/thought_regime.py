"""What does one round of Thought Preference Optimization, under each training regime, do to a seed model's thoughts
and answers? (A check of the regime bench/thought.py uses for every arm.)

A round of the thought loop trains on best-against-worst pairs of full outputs (thought + response). Most pairs on a
task whose answers a small model often gets right without thinking hold a filler thought on both sides and differ only
in the answer; a few hold a correct scratchpad on the chosen side. This script takes one seed model and one round of
pairs from a finished bench/thought.py run (its seed model and the thinking arm's round-0 pairs of `--seed`), trains
one round from them under each regime below, and measures on held-out problems, per helping task:

* greedy accuracy and the share of greedy thoughts that are the correct scratchpad (what bench/thought.py reports);
* over K = 4 samples at T = 0.8: the share of thoughts that attempt a scratchpad (are not a generic filler) and the
  share that are the correct scratchpad (the thought distribution a round is meant to move).

Regimes (DPO on the pairs plus alpha times the NLL of the chosen output, or SFT on the chosen outputs):
    earlier      beta 0.1, alpha 1, lr 5e-4, 3 epochs   (bench/thought.py before 2026-12-07)
    bench        beta 0.5, alpha 1, lr 2e-4, 4 epochs   (bench/thought.py now)
    plain_dpo    beta 0.5, alpha 0, lr 2e-4, 4 epochs   (the paper's loss: no NLL term)
    sft_chosen   SFT on the chosen outputs, lr 2e-4, 4 epochs (the pairs' chosen side alone)

Run: python bench/thought.py --quick --sort-n 6 && python bench/thought_regime.py
"""
from __future__ import annotations
import argparse, json, shutil, statistics, sys, time
from pathlib import Path

from _common import ROOT, bench_env, machine_info, write_results
bench_env()
import thought as T

REGIMES = {"earlier": ("dpo", dict(beta=0.1, alpha=1.0, lr=5e-4, epochs=3)),
           "bench": ("dpo", dict(beta=0.5, alpha=1.0, lr=2e-4, epochs=4)),
           "plain_dpo": ("dpo", dict(beta=0.5, alpha=0.0, lr=2e-4, epochs=4)),
           "sft_chosen": ("sft", dict(beta=0.5, alpha=1.0, lr=2e-4, epochs=4))}
CLAIM = ("One round of the bench's regime moves the seed model's sampled sums thoughts toward the correct scratchpad and "
         "keeps its answers: rule: 'reproduced' if, for the 'bench' regime, the sampled share of correct sums thoughts rises "
         "by > 0.03 over the seed model's and greedy sums accuracy falls by no more than 0.05; 'partial' if only one of the "
         "two holds; 'not reproduced' otherwise.")


def measure(path: str, tests: dict, k: int = 4) -> dict:
    "Greedy accuracy and correct-thought share, and over k samples the attempted and correct thought shares, per task."
    from latent_lm.lm import load_lm
    from latent_lm.generate import HFGenerator
    from latent_lm.tasks import check_scratch
    from latent_lm.thought.core import thought_prompt, parse_output, GENERIC_THOUGHTS
    m, tok = load_lm(path)
    gen, out = HFGenerator(m, tok, batch_size=150), {}
    for task, test in tests.items():
        prompts = [thought_prompt(p["question"]) for p in test]
        g = [parse_output(o[0].text) for o in gen.generate(prompts, n=1, temperature=0, max_new_tokens=128, chat=False)]
        s = [(parse_output(c.text), p) for cs, p in zip(gen.generate(prompts, n=k, temperature=0.8, top_p=0.95, max_new_tokens=128,
                                                                   chat=False, seed=0), test) for c in cs]
        out[task] = {"greedy_accuracy": statistics.fmean(q.ok and check_scratch(q.response, p["answer"]) for q, p in zip(g, test)),
                     "greedy_correct_thought": statistics.fmean(q.ok and T.thought_correct(q.thought, p["thought"]) for q, p in zip(g, test)),
                     "sampled_attempt": statistics.fmean(q.ok and q.thought.strip() not in GENERIC_THOUGHTS for q, _ in s),
                     "sampled_correct_thought": statistics.fmean(q.ok and T.thought_correct(q.thought, p["thought"]) for q, p in s),
                     "sampled_accuracy": statistics.fmean(q.ok and check_scratch(q.response, p["answer"]) for q, p in s)}
    return out


def run_config(cfg) -> dict:
    "The config of the bench/thought.py run whose seed model and pairs are used, without this machine's paths."
    from dataclasses import asdict
    c = asdict(cfg)
    c.pop("run_dir", None)
    c["model"]["init"] = "the run's seed model (seed<s>/init_model)"
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/latent_lm_bench_thought", help="a finished bench/thought.py work folder")
    ap.add_argument("--seed", type=int, default=0, help="whose seed model and round-0 pairs to use")
    ap.add_argument("--out", default="/tmp/latent_lm_bench_thought_regime", help="where the trained models go (removed first)")
    ap.add_argument("--n-test", type=int, default=150)
    args = ap.parse_args()
    import torch; torch.set_num_threads(1)
    from latent_lm.core import read_jsonl
    from latent_lm.rounds import TrainConfig, train_round, run_seed
    from latent_lm.tasks import scratch_problems
    from latent_lm.thought.core import parse_output, GENERIC_THOUGHTS
    from latent_lm.thought.run import load_config, round_problems
    sdir = Path(args.work) / f"seed{args.seed}"
    m0, pairs_file = sdir / "init_model", sdir / "thought" / "thought" / "round_0" / "selected.jsonl"
    if not (m0 / "config.json").exists() or not pairs_file.exists():
        sys.exit(f"No finished bench/thought.py run in {args.work} (need {m0} and {pairs_file}): run "
                 "`python bench/thought.py --quick --sort-n 6` first, or pass --work.")
    cfg = load_config(sdir / "thought" / "config.json")
    tests = {t: scratch_problems(t, args.n_test, seed=run_seed(cfg.task.seed, "test", t), **cfg.task.difficulty[t]) for t in T.HELPS}
    pairs = read_jsonl(pairs_file)
    gold = {p["key"]: p["thought"] for p in round_problems(cfg, 0)}
    t0 = time.time()
    res_m0 = measure(str(m0), tests)
    print("M0", json.dumps(res_m0), file=sys.stderr, flush=True)
    pair_stats = {}
    for task in T.HELPS:
        ps = [r for r in pairs if r["task"] == task]
        side = lambda s, f: statistics.fmean(f(parse_output(r[s]), r) for r in ps) if ps else None
        pair_stats[task] = {"n_pairs": len(ps),
                            "chosen_correct_thought": side("chosen", lambda q, r: T.thought_correct(q.thought, gold[r["key"]])),
                            "rejected_correct_thought": side("rejected", lambda q, r: T.thought_correct(q.thought, gold[r["key"]])),
                            "chosen_filler": side("chosen", lambda q, r: q.thought.strip() in GENERIC_THOUGHTS),
                            "rejected_filler": side("rejected", lambda q, r: q.thought.strip() in GENERIC_THOUGHTS)}
    out_root = Path(args.out)
    shutil.rmtree(out_root, ignore_errors=True)
    results = {}
    for name, (kind, hp) in REGIMES.items():
        recs = pairs if kind == "dpo" else [{"prompt": r["prompt"], "completion": r["chosen"], "key": r["key"]} for r in pairs]
        tc = TrainConfig(**hp, batch_size=cfg.train.batch_size, lr_schedule="cosine", checkpoint=False)
        t = time.time()
        info = train_round(str(m0), recs, out_root / name, tc, kind=kind, seed=run_seed(args.seed, "regime", name))
        results[name] = measure(str(out_root / name), tests) | {"train_steps": info["steps"], "seconds": time.time() - t}
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    shutil.rmtree(out_root, ignore_errors=True)

    d = lambda name, task, key: results[name][task][key] - res_m0[task][key]
    moved = d("bench", "sums", "sampled_correct_thought") > 0.03
    kept = d("bench", "sums", "greedy_accuracy") >= -0.05
    verdict = "reproduced" if moved and kept else "partial" if moved or kept else "not reproduced"
    premise_holds = bool(pair_stats["sums"]["chosen_correct_thought"] - res_m0["sums"]["sampled_correct_thought"] > 0.05)
    pc_shows = bool(d("sft_chosen", "sums", "sampled_correct_thought") > 0.03)
    arms = {"M0": {f"{t}_{k}": v for t, o in res_m0.items() for k, v in o.items()} | {"seeds": [args.seed]}}
    for name, r in results.items():
        arms[name] = {f"{t}_{k}": v for t, o in r.items() if t in T.HELPS for k, v in o.items()} | {
            "train_steps": r["train_steps"], "seconds": r["seconds"], "seeds": [args.seed]}
    res = {
        "claim": CLAIM, "command": "python bench/thought_regime.py" + (f" --seed {args.seed}" if args.seed else ""),
        "setup": {"regimes": {k: {"kind": v[0], **v[1]} for k, v in REGIMES.items()}, "seed": args.seed, "n_test": args.n_test,
                  "n_pairs": len(pairs), "seed_model": "bench/thought.py's seed model of this seed (work folder seed<s>/init_model)",
                  "pairs": "the thinking arm's round-0 pairs of that run", "run_config": run_config(cfg),
                  "wall_seconds": round(time.time() - t0, 1), "machine": machine_info()},
        "arms": arms, "verdict": verdict,
        "premise": {"what": "The round's pairs carry the signal: their chosen outputs hold the correct sums scratchpad more "
                            "often (by > 0.05) than the seed model's own samples do.",
                    "numbers": {"pairs": pair_stats, "m0_sampled_correct_thought_sums": res_m0["sums"]["sampled_correct_thought"]},
                    "holds": premise_holds},
        "positive_control": {"what": "SFT on the chosen outputs alone raises the sampled share of correct sums thoughts by > 0.03 "
                                     "(the pairs' chosen side moves the thoughts when nothing pushes the rejected side down).",
                             "numbers": {"sft_chosen_minus_m0_sampled_correct_thought_sums": d("sft_chosen", "sums", "sampled_correct_thought")},
                             "shows": pc_shows},
        "notes": "",
    }
    res["notes"] = ("Change from the seed model after one round, sums: " + "; ".join(
        f"{n}: sampled correct thought {d(n, 'sums', 'sampled_correct_thought'):+.3f}, attempted {d(n, 'sums', 'sampled_attempt'):+.3f}, "
        f"greedy accuracy {d(n, 'sums', 'greedy_accuracy'):+.3f}" for n in REGIMES) + ". Sort: " + "; ".join(
        f"{n}: greedy accuracy {d(n, 'sort', 'greedy_accuracy'):+.3f}" for n in REGIMES)
        + ". One seed model and one round of pairs: a regime check, not a claim of the paper; bench/thought.py runs the "
          "chosen regime over seeds and iterations.")
    write_results("thought_regime", res, markdown(res, res_m0, results))
    print(markdown(res, res_m0, results))


def markdown(res, m0, results) -> str:
    rows = [("seed model", m0)] + list(results.items())
    lines = [f"# Thought PO: which training regime moves the thoughts ({res['verdict']})", "", f"**Claim.** {res['claim']}", "",
             f"Command: `{res['command']}` ({res['setup']['wall_seconds']:.0f} s, seed {res['setup']['seed']}, "
             f"{res['setup']['n_pairs']} pairs)", "",
             "| model | sums greedy acc | sums greedy correct thought | sums sampled attempt | sums sampled correct thought | sort greedy acc | sort sampled correct thought |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['sums']['greedy_accuracy']:.3f} | {r['sums']['greedy_correct_thought']:.3f} | "
                     f"{r['sums']['sampled_attempt']:.3f} | {r['sums']['sampled_correct_thought']:.3f} | "
                     f"{r['sort']['greedy_accuracy']:.3f} | {r['sort']['sampled_correct_thought']:.3f} |")
    lines += ["", f"**Premise** (holds: {res['premise']['holds']}): {res['premise']['what']}", "", "```",
              json.dumps(res["premise"]["numbers"], indent=1), "```", "",
              f"**Positive control** (shows: {res['positive_control']['shows']}): {res['positive_control']['what']} "
              f"`{json.dumps(res['positive_control']['numbers'])}`", "", f"**Verdict: {res['verdict']}.**", "", f"**Notes.** {res['notes']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
