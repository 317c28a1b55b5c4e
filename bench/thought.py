"""Benchmark: after a few iterations of Thought Preference Optimization, does the thinking model beat the direct-response
baseline trained the same way, on tasks where a scratchpad helps, and not on a control where it cannot?

Setup (the honest tiny version of the paper's experiment, spec section C.6):

* Tasks (latent_lm.tasks), mixed in every round like the paper's general instructions: `sums` of four single-digit
  numbers (a scratchpad of partial sums turns one hard one-pass addition into easy two-number steps), `sort` of four
  digits, or more with `--sort-n` (a scratchpad that takes out the smallest number step by step), and `lookup` in a small key-value list (one
  attention look-up; nothing to think through: the control).
* Seed model M0 (one per seed, shared by every arm of that seed): a small Llama-style model trained from scratch on direct
  answers and on the paper's generic thought format, where only a fraction (`useful`) of the thoughts are the correct
  scratchpad and the rest generic filler: it follows the format, its thoughts are mostly not useful yet, but SOME of its
  sampled thoughts are correct, so that best-vs-worst selection by a response-only judge has something to select.
  The share of correct sampled thoughts at M0 is measured before the loop (premise). `bench/thought_m0.py` trains M0s at
  several step budgets, `useful` fractions and sort lengths and picks, by a rule stated first, the regime where that share
  is 5-30% on sums; `--m0-dir` then takes its snapshots as the seed models (`--m0-seed s`: the seed-s one for every seed).
* Arms (per seed: the same M0, the same fresh instructions, K samples, judge and DPO settings per iteration):
    thought                the paper's method: thought prompt, judge on the response alone, best-vs-worst full outputs
    direct                 the baseline: the instruction alone, the same loop
    thought_lenbias        thought on sums, with a length-biased judge (exact + bias per response character), no length control
    thought_lenbias_rho<r> the same judge with the paper's length control, for each rho of a small grid; the tuned rho is
                           the smallest one whose round-0 chosen responses are on average not longer than the rejected ones
                           (the paper's rule)
  Since 2026-12-07 the seed model also learns *worked solutions* (`model.practice`: the scratchpad under a prompt of its
  own, latent_lm.thought.seed_records): it can carry out a scratchpad, but under the thought prompt it mostly writes
  filler (20% useful thought records), 5000 SFT steps. The earlier seed model (80% useful, no practice,
  bench/results/thought_m0.md) attempted a scratchpad in most of its sampled sums thoughts, but got few of those attempts
  right: selection then had almost no right thought to choose, and training had to teach arithmetic, not the habit of
  thinking. The premise now measures both (sampled_attempt, sampled_correct_given_attempt).
* Training per iteration: DPO on the best-vs-worst full outputs plus the NLL of the chosen output (alpha = 1, IRPO;
  the paper found no noticeable difference from plain DPO; with plain DPO, an earlier version of this bench saw the sums
  accuracy of both arms fall over two iterations: thought 0.55 -> 0.49, direct 0.44 -> 0.29). beta 0.5, lr 2e-4,
  4 epochs, 160 fresh instructions per task per iteration, 4 iterations, the same for every arm. The earlier regime (beta 0.1, lr 5e-4, 3 epochs, 48 instructions, 2 iterations)
  was changed with the seed model, after a one-round check on an earlier seed model: bench/thought_regime.py repeats that
  check on this file's seed model and round-0 pairs (what one round of each regime, plain DPO and SFT on the chosen
  outputs does to the sampled thoughts and the greedy accuracy; bench/results/thought_regime.md).
* Metrics on held-out problems per task: accuracy of the greedy output (resampled on parse errors), win rate against
  M0 answering directly, thought and response lengths, the share of greedy thoughts that are the correct scratchpad.

Run: python bench/thought.py --quick --sort-n 6   (writes bench/results/thought.json, thought.md, thought.png, thought_example.png)
With the earlier seed model, bench/thought_m0.py's pick (bench/results/thought_m0.md), and this file's training regime:
     python bench/thought.py --quick --m0-dir --m0-seed 0 --pretrain-steps 1500 --useful 0.8 --practice 0 --sort-n 6
"""
from __future__ import annotations
import argparse, shlex, json, math, shutil, statistics, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _common import ROOT, bench_env, machine_info, arm_stats, write_results
bench_env()

TASKS = {"sums": {"n_numbers": 4, "lo": 1, "hi": 9}, "sort": {"n_numbers": 4, "lo": 1, "hi": 9}, "lookup": {"n_keys": 4}}
HELPS, CONTROL = ("sums", "sort"), "lookup"

CLAIM = ("After a few iterations the thinking model (Thought Preference Optimization) beats the direct-response baseline "
         "trained the same way on tasks where a scratchpad helps (sums, sort), and not on a control where it cannot (lookup). "
         "Verdict rule on greedy test accuracy of the last iteration's models, over seeds: with d = thought - direct per "
         "seed, a helping task 'shows' if mean(d) > 0.05 and mean(d) > 2 * std(d) / sqrt(n_seeds); 'reproduced' if both "
         "sums and sort show and on lookup mean(d) <= 0.05; 'partial' if at least one helping task shows (or both show but "
         "thinking also gains more than 0.05 on lookup), or if on a helping task d > 0 in every seed; 'not reproduced' otherwise.")


def base_config(quick: bool) -> dict:
    "The settings every arm shares (a `latent_lm.thought.run` config without run_dir, arms and judge)."
    return {
        "rounds": 4 if quick else 6, "prompt": "generic",
        "task": {"tasks": list(TASKS), "difficulty": TASKS, "n_train": 160 if quick else 320, "n_test": 150 if quick else 300},
        "model": {"init": "tiny", "tokenizer": "task", "d_model": 64, "n_layers": 2, "n_heads": 4, "max_len": 256,
                  "useful": 0.2, "practice": 1.0, "vocab_size": 512, "pretrain_problems": 4500, "pretrain_steps": 5000 if quick else 8000,
                  "pretrain_lr": 3e-3, "pretrain_batch_size": 32, "target_accuracy": 1.0, "eval_every": 100000,
                  "fine_eval_from": 1.0, "n_dev": 16},
        "sampling": {"k": 8, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 96, "batch_size": 256},
        "train": {"beta": 0.5, "alpha": 1.0, "lr": 2e-4, "epochs": 4, "batch_size": 16, "lr_schedule": "cosine", "checkpoint": False},
        "eval": {"resample": 2, "temperature": 0.8, "max_new_tokens": 96},
    }


M0_WORK = "/tmp/latent_lm_bench_thought_m0"     # bench/thought_m0.py's default work folder
LENGTH_BIAS, RHOS = 0.02, (0.5, 1.0, 2.0)
ARMS = {  # arm -> (arm of the run, judge section, tasks (None: all))
    "thought": ("thought", {"kind": "exact", "rho": 0.0}, None),
    "direct": ("direct", {"kind": "exact", "rho": 0.0}, None),
    "thought_lenbias": ("thought", {"kind": "length_biased", "length_bias": LENGTH_BIAS, "rho": 0.0}, ["sums"]),
    **{f"thought_lenbias_rho{r}": ("thought", {"kind": "length_biased", "length_bias": LENGTH_BIAS, "rho": r}, ["sums"]) for r in RHOS},
}
LENGTH_ARMS = [a for a in ARMS if a.startswith("thought_lenbias")]


def thought_correct(thought: str, gold: str) -> bool:
    "Whether a thought is the task's correct scratchpad (sums: every partial sum; sort: every take-the-smallest step)."
    norm = lambda t: " ".join((t or "").split())
    return bool(gold) and norm(thought) == norm(gold)


def premise(m0: str, cfg, n: int = 100) -> dict:
    """Per helping task, M0's greedy accuracy answering directly, after a forced correct scratchpad and after a forced
    generic thought; and its own sampled thoughts with the thought prompt: how many are the correct scratchpad."""
    from latent_lm.lm import load_lm
    from latent_lm.generate import HFGenerator
    from latent_lm.rounds import run_seed as _seed
    from latent_lm.tasks import scratch_problems, check_scratch
    from latent_lm.thought.core import thought_prompt, parse_output, GENERIC_THOUGHTS, MARKERS
    m, tok = load_lm(m0)
    gen = HFGenerator(m, tok, batch_size=128)
    tm, rm = MARKERS["generic"]
    out = {}
    for task in HELPS:
        test = scratch_problems(task, n, seed=_seed(cfg.task.seed, "test", task), **cfg.task.difficulty[task])
        def acc(kind, prefill=None):             # prefill: the forced start of the output (thought marker, thought, response marker)
            outs = gen.generate([thought_prompt(p["question"], kind) for p in test], n=1, temperature=0, max_new_tokens=40,
                                chat=False, prefill=prefill)
            return sum(check_scratch(o[0].text, p["answer"]) for o, p in zip(outs, test)) / len(test)
        o = {"direct": acc("direct"), "correct_scratchpad": acc("generic", [f"{tm} {p['thought']}\n{rm}" for p in test]),
             "generic_thought": acc("generic", [f"{tm} {GENERIC_THOUGHTS[0]}\n{rm}" for p in test])}
        samples = gen.generate([thought_prompt(p["question"]) for p in test], n=8, temperature=0.8, top_p=0.95,
                               max_new_tokens=cfg.sampling.max_new_tokens,
                               chat=False, seed=0)
        parsed = [(parse_output(c.text), p) for cs, p in zip(samples, test) for c in cs]
        good = [q.ok and thought_correct(q.thought, p["thought"]) for q, p in parsed]
        attempt = [q.ok and q.thought.strip() not in GENERIC_THOUGHTS for q, _ in parsed]   # not a filler: a scratchpad tried
        right = [q.ok and check_scratch(q.response, p["answer"]) for q, p in parsed]
        o["sampled_correct_thought"] = sum(good) / len(parsed)
        o["sampled_parse_error"] = sum(not q.ok for q, _ in parsed) / len(parsed)
        o["sampled_accuracy"] = sum(right) / len(parsed)
        o["sampled_accuracy_given_correct_thought"] = (sum(r for r, g in zip(right, good) if g) / sum(good)) if any(good) else None
        o["sampled_accuracy_given_other_thought"] = (sum(r for r, g in zip(right, good) if not g) / (len(good) - sum(good))
                                                     if not all(good) else None)
        o["sampled_attempt"] = sum(attempt) / len(parsed)
        o["sampled_correct_given_attempt"] = (sum(g for g, a in zip(good, attempt) if a) / sum(attempt)) if any(attempt) else None
        o["prompts_with_a_correct_thought"] = sum(any(good[i * 8:(i + 1) * 8]) for i in range(len(test))) / len(test)
        out[task] = o
    return out


def thought_stats(run_dir: Path, cfg, which: str) -> dict:
    """From an arm's files: the share of greedy test thoughts that are the correct scratchpad, per model and task; and per
    round and task, the share of chosen and of rejected outputs whose thought is the correct scratchpad."""
    from latent_lm.core import read_jsonl
    from latent_lm.thought.run import test_problems, round_problems
    from latent_lm.thought.core import parse_output
    gold = {p["key"]: p["thought"] for p in test_problems(cfg)}
    out = {"greedy": [], "pairs": []}
    for k in range(cfg.rounds + 1):
        recs = read_jsonl(run_dir / which / "eval" / f"m{k}.jsonl")
        out["greedy"].append({t: statistics.fmean([thought_correct(r["thought"], gold[r["key"]]) for r in recs if r["task"] == t])
                              for t in cfg.task.tasks})
    if which == "direct": return out
    for k in range(cfg.rounds):
        g = {p["key"]: p["thought"] for p in round_problems(cfg, k)}
        sel = read_jsonl(run_dir / which / f"round_{k}" / "selected.jsonl")
        row = {}
        for t in cfg.task.tasks:
            ps = [r for r in sel if r["task"] == t]
            if ps:
                row[t] = {side: statistics.fmean([thought_correct(parse_output(r[side]).thought, g[r["key"]]) for r in ps])
                          for side in ("chosen", "rejected")} | {"n": len(ps)}
        out["pairs"].append(row)
    return out


def m0_snapshot(m0_dir: str, overrides: dict, seed: int) -> Path:
    "Where `bench/thought_m0.py` saved the seed model of this setting, seed and step budget."
    return Path(m0_dir) / setting_name(overrides) / f"seed{seed}" / f"steps{overrides['pretrain_steps']}"


def setting_name(overrides: dict) -> str:
    "The name `bench/thought_m0.py` gives a seed-model setting: u<useful>_sort<numbers to sort>[_p<practice>]."
    p = overrides.get("practice", 0)
    return f"u{overrides['useful']:g}_sort{overrides.get('sort_n', TASKS['sort']['n_numbers'])}" + (f"_p{p:g}" if p else "")


def parse_setting(name: str) -> dict:
    "'u0.5_sort6' -> {'useful': 0.5, 'sort_n': 6}, 'u0.2_sort6_p1' -> {..., 'practice': 1.0} (the inverse of `setting_name`)."
    try:
        u, s, *p = name.split("_")
        assert u[0] == "u" and s.startswith("sort") and len(p) <= 1 and (not p or p[0].startswith("p"))
        return {"useful": float(u[1:]), "sort_n": int(s[4:]), "practice": float(p[0][1:]) if p else 0.0}
    except (ValueError, AssertionError, IndexError):
        sys.exit(f"A seed-model setting is named like 'u0.5_sort6' or 'u0.2_sort6_p1' (useful fraction, numbers to sort, "
                 f"practice fraction), got {name!r}.")


def seed_and_premise(seed: int, quick: bool, work: str, overrides: dict | None = None, m0_dir: str | None = None,
                     m0_seed: int | None = None) -> dict:
    """Stage 1, one process per seed: the seed model M0 (a finished one in the work folder is reused; with `m0_dir`, the
    snapshot `bench/thought_m0.py` trained for this setting and budget, of this seed or of `m0_seed`) and the premise."""
    from latent_lm.thought.run import load_config, seed_model
    import torch; torch.set_num_threads(1)
    t0 = time.time()
    sdir = Path(work) / f"seed{seed}"; sdir.mkdir(parents=True, exist_ok=True)
    cfg0 = load_config({**settings(quick, overrides), "seed": seed, "run_dir": str(sdir / "m0cfg")})
    if m0_dir:
        ms = seed if m0_seed is None else m0_seed
        m0 = str(m0_snapshot(m0_dir, overrides, ms))
        if not (Path(m0) / "latent_lm_done.json").exists():
            sys.exit(f"No seed model at {m0}: train it with bench/thought_m0.py --work {m0_dir} --settings "
                     f"{setting_name(overrides)} --budgets {overrides['pretrain_steps']} --seeds {ms}")
    else:
        m0 = trained_seed_model(cfg0, sdir)
    probe = Path(m0) / "probe.json"           # bench/thought_m0.py measured this snapshot with `premise` already
    out = {"seed": seed, "m0": m0, "m0_seconds": time.time() - t0,
           "premise": json.loads(probe.read_text())["premise"] if m0_dir and probe.exists() else premise(m0, cfg0)}
    print(f"seed {seed} M0 ({out['m0_seconds']:.0f} s): " + json.dumps(out["premise"]), file=sys.stderr, flush=True)
    return out


def seed_model_settings(cfg) -> dict:
    "What a seed model trained in the work folder depends on: its model section, the tasks, the prompt and the seeds."
    from dataclasses import asdict
    return json.loads(json.dumps({"model": asdict(cfg.model), "tasks": cfg.task.tasks, "difficulty": cfg.task.difficulty,
                                  "task_seed": cfg.task.seed, "seed": cfg.seed, "prompt": cfg.prompt}))


def trained_seed_model(cfg, sdir: Path) -> str:
    """The seed model of `sdir` (trained once; a finished one is reused only if it was trained with the same settings,
    recorded beside it, so that a `--resume` after a settings change stops instead of comparing arms of another M0)."""
    from latent_lm.core import atomic_write_json
    from latent_lm.thought.run import seed_model
    out, stamp, want = sdir / "init_model", sdir / "init_model_settings.json", seed_model_settings(cfg)
    if (out / "latent_lm_done.json").exists():
        have = json.loads(stamp.read_text()) if stamp.exists() else None
        if have != want:
            sys.exit(f"The seed model in {out} was trained with other settings than this command's (or before they were "
                     f"recorded); remove {sdir} or run without --resume (a fresh work folder).")
    m0 = seed_model(cfg, out)
    atomic_write_json(stamp, want)
    return m0


def run_arm(seed: int, name: str, quick: bool, work: str, m0: str, overrides: dict | None = None, deadline: float | None = None) -> dict | None:
    """Stage 2, one process per (seed, arm): the arm's iterations from that seed's M0 (a finished run folder is resumed).
    None, without running, if the wall-clock `deadline` (epoch seconds) has passed when it would start."""
    if deadline and time.time() > deadline:
        print(f"seed {seed} {name}: not started, past the deadline", file=sys.stderr, flush=True)
        return None
    from latent_lm.thought.run import load_config, ThoughtRun
    import torch; torch.set_num_threads(1)
    which, judge, tasks = ARMS[name]
    sdir = Path(work) / f"seed{seed}"
    d = {**settings(quick, overrides), "seed": seed, "run_dir": str(sdir / name), "arms": [which], "judge": judge}
    if tasks: d["task"] = {**d["task"], "tasks": tasks, "difficulty": {t: d["task"]["difficulty"][t] for t in tasks}}
    d["model"]["init"] = m0
    t = time.time()
    cfg = load_config(d)
    a = ThoughtRun(cfg).run()["arms"][which]
    print(f"seed {seed} {name} ({time.time() - t:.0f} s): " + " | ".join(
        f"{m['model']} " + " ".join(f"{k} {m['eval'][k]['accuracy']:.2f}" for k in cfg.task.tasks) for m in a["models"]),
        file=sys.stderr, flush=True)
    return {"models": [{"model": m["model"], "eval": m["eval"]} for m in a["models"]], "rounds": a["rounds"],
            "thoughts": thought_stats(sdir / name, cfg, which), "seconds": time.time() - t}


def settings(quick: bool, overrides: dict | None = None) -> dict:
    "`base_config` with the command line's overrides: model fields, and `sort_n` (numbers to sort)."
    base, o = base_config(quick), dict(overrides or {})
    sort_n = o.pop("sort_n", None)
    if o.get("lr") is not None: base["train"]["lr"] = o.pop("lr")
    if sort_n: base["task"]["difficulty"] = {**TASKS, "sort": {**TASKS["sort"], "n_numbers": sort_n}}
    if sort_n and sort_n > 4:                    # a thought + response for 6 numbers needs about 100 tokens: 96 cut some off
        base["sampling"]["max_new_tokens"] = base["eval"]["max_new_tokens"] = 128
    base["model"].update(o)
    return base


def ms(xs):
    xs = [float(x) for x in xs if x is not None]
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (None, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small setting (about 15-20 minutes on 2 loaded cores)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=3, help="seed models train in parallel processes, one thread each")
    ap.add_argument("--arm-workers", type=int, default=18, help="(seed, arm) runs in parallel processes, one thread each")
    ap.add_argument("--resume", action="store_true", help="keep the work folder: finished seed models and arm runs are reused")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--work", default="/tmp/latent_lm_bench_thought")
    ap.add_argument("--pretrain-steps", type=int, default=None, help="seed-model SFT steps (default: the setting's)")
    ap.add_argument("--useful", type=float, default=None, help="share of correct scratchpads in the seed model's thought records")
    ap.add_argument("--practice", type=float, default=None, help="share of problems with a worked-solution record in the seed model's data")
    ap.add_argument("--sort-n", type=int, default=None, help=f"numbers to sort (default {TASKS['sort']['n_numbers']})")
    ap.add_argument("--m0-dir", nargs="?", const=M0_WORK, default=None, help="take the seed models from this bench/thought_m0.py "
                    f"work folder (default {M0_WORK}): its snapshot of this setting and budget per seed, instead of training them")
    ap.add_argument("--m0-seed", type=int, default=None, help="with --m0-dir: every seed starts from this seed's snapshot (the "
                    "seeds then vary only the loop: instructions, samples, training order)")
    ap.add_argument("--m0-per-seed", action="store_true", help="with --m0-dir: each seed starts from its own snapshot at its "
                    "own budget, as bench/results/thought_m0.json picked it (picked_per_seed; --pretrain-steps is then ignored)")
    ap.add_argument("--deadline", default=None, help="HH:MM (UTC): arm runs not started by then are left out; the results "
                    "cover the seeds whose compared arms finished (said in notes)")
    ap.add_argument("--lr", type=float, default=None, help="DPO learning rate of every arm (default: the setting's)")
    ap.add_argument("--tag", default="", help="write bench/results/thought_<tag>.* instead of thought.*")
    ap.add_argument("--note", default="", help="text appended to the results' notes (e.g. why a setting was chosen)")
    ap.add_argument("--rebuild", action="store_true", help="only redo the results file from a finished run's work folder (per_seed.json)")
    args = ap.parse_args()
    check_arms(args.arms)
    args.overrides = {k: v for k, v in (("pretrain_steps", args.pretrain_steps), ("useful", args.useful), ("sort_n", args.sort_n), ("lr", args.lr), ("practice", args.practice))
                      if v is not None}
    if args.m0_dir:
        args.overrides = {"pretrain_steps": base_config(args.quick)["model"]["pretrain_steps"], "useful": base_config(args.quick)["model"]["useful"]} | args.overrides
    seed_overrides = [args.overrides] * len(args.seeds)
    if args.m0_per_seed:
        if not args.m0_dir or args.m0_seed is not None: sys.exit("--m0-per-seed needs --m0-dir and no --m0-seed.")
        m0res = json.loads((ROOT / "bench" / "results" / "thought_m0.json").read_text())
        picks, setting = m0res.get("picked_per_seed") or {}, (m0res.get("picked") or {}).get("setting")
        if setting != setting_name(args.overrides):
            sys.exit(f"bench/results/thought_m0.json picked the setting {setting}, not {setting_name(args.overrides)}: pass its --useful/--sort-n.")
        missing = [s for s in args.seeds if picks.get(str(s)) is None]
        if missing: sys.exit(f"bench/results/thought_m0.json has no qualifying M0 for seeds {missing}; probe more budgets with bench/thought_m0.py.")
        seed_overrides = [args.overrides | {"pretrain_steps": picks[str(s)]} for s in args.seeds]
        args.m0_steps = {s: picks[str(s)] for s in args.seeds}
    t0 = time.time()
    work = Path(args.work)
    if args.rebuild:
        per_seed = json.loads((work / "per_seed.json").read_text())
        name = "thought" + (f"_{args.tag}" if args.tag else "")
        return aggregate(per_seed, args, t0 - json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())["setup"]["wall_seconds"])
    if work.exists() and not args.resume: shutil.rmtree(work)
    with ProcessPoolExecutor(max_workers=min(args.workers, len(args.seeds))) as ex:
        per_seed = list(ex.map(seed_and_premise, args.seeds, [args.quick] * len(args.seeds), [str(work)] * len(args.seeds),
                               seed_overrides, [args.m0_dir] * len(args.seeds), [args.m0_seed] * len(args.seeds)))
    # the compared arms of every seed first, then the length-control arms: past the deadline, whole seeds or arms are left out
    jobs = [(s["seed"], arm, s["m0"]) for s in per_seed for arm in args.arms if arm in ("thought", "direct")]
    jobs += [(s["seed"], arm, s["m0"]) for s in per_seed for arm in args.arms if arm not in ("thought", "direct")]
    deadline = deadline_epoch(args.deadline) if args.deadline else None
    with ProcessPoolExecutor(max_workers=min(args.arm_workers, len(jobs))) as ex:
        done = list(ex.map(run_arm, [j[0] for j in jobs], [j[1] for j in jobs], [args.quick] * len(jobs), [str(work)] * len(jobs),
                           [j[2] for j in jobs], [args.overrides] * len(jobs), [deadline] * len(jobs)))
    for s in per_seed: s["arms"] = {arm: r for (seed, arm, _), r in zip(jobs, done) if seed == s["seed"] and r is not None}
    (work / "per_seed.json").write_text(json.dumps(per_seed))
    kept = [s for s in per_seed if {"thought", "direct"} <= set(s["arms"])]
    if not kept: sys.exit("No seed finished both compared arms before the deadline; nothing to aggregate (rerun with --resume).")
    args.left_out = {"seeds": [s["seed"] for s in per_seed if s not in kept],
                     "arms": [a for a in args.arms if not all(a in s["arms"] for s in kept)]}
    args.arms = [a for a in args.arms if a not in args.left_out["arms"]]
    args.seeds = [s["seed"] for s in kept]
    aggregate(kept, args, t0)


def m0_label(path: str, args) -> str:
    "The seed model's folder as the results file names it: relative to its work folder (no machine paths)."
    for root in (getattr(args, "m0_dir", None), args.work):
        if root and str(path).startswith(str(root)): return str(Path(path).relative_to(root))
    return Path(path).name


def deadline_epoch(hhmm: str) -> float:
    "Epoch seconds of today's HH:MM in UTC (the deadline after which no arm run starts)."
    import datetime as dt
    h, m = map(int, hhmm.split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(hour=h, minute=m, second=0, microsecond=0).timestamp()


def check_arms(arms):
    if not {"thought", "direct"} <= set(arms): sys.exit("--arms must include 'thought' and 'direct' (the claim compares them).")


def aggregate(per_seed, args, t0):
    "The results file from the per-seed results: arms, verdict by the rule in CLAIM, premise, positive control, figure."
    base = settings(args.quick, getattr(args, "overrides", None))
    R, n = base["rounds"], len(per_seed)
    ev = lambda s, arm, i, task, key="accuracy": s["arms"][arm]["models"][i]["eval"][task].get(key)
    tasks_of = lambda arm: ARMS[arm][2] or list(TASKS)

    # ---- arms in the shared schema: metrics of M0 and of the last iteration's model per arm
    arms = {}
    for arm in args.arms:
        vals = {}
        for task in tasks_of(arm):
            for key in ("accuracy", "win_rate", "thought_length", "response_length", "parse_error"):
                vals[f"{task}_{key}_M{R}"] = [ev(s, arm, -1, task, key) for s in per_seed]
            vals[f"{task}_accuracy_M0"] = [ev(s, arm, 0, task) for s in per_seed]
            vals[f"{task}_correct_thought_M0"] = [s["arms"][arm]["thoughts"]["greedy"][0][task] for s in per_seed]
            vals[f"{task}_correct_thought_M{R}"] = [s["arms"][arm]["thoughts"]["greedy"][-1][task] for s in per_seed]
        r0 = lambda s, f: s["arms"][arm]["rounds"][0][f]
        vals["chosen_minus_rejected_length_round0"] = [r0(s, "chosen_length") - r0(s, "rejected_length") for s in per_seed]
        vals["response_length_M0"] = [ev(s, arm, 0, "all", "response_length") for s in per_seed]
        vals[f"response_length_M{R}"] = [ev(s, arm, -1, "all", "response_length") for s in per_seed]
        arms[arm] = arm_stats(vals, args.seeds)
        arms[arm]["by_iteration"] = {
            task: {k: [ms([ev(s, arm, i, task, k) for s in per_seed])[0] for i in range(R + 1)]
                   for k in ("accuracy", "win_rate", "thought_length", "response_length")}
                  | {"correct_thought": [ms([s["arms"][arm]["thoughts"]["greedy"][i][task] for s in per_seed])[0] for i in range(R + 1)]}
            for task in tasks_of(arm)}
        arms[arm]["by_iteration"]["chosen_minus_rejected_length"] = [
            ms([s["arms"][arm]["rounds"][i]["chosen_length"] - s["arms"][arm]["rounds"][i]["rejected_length"] for s in per_seed])[0]
            for i in range(R)]

    # ---- verdict, computed from the arms by the rule in CLAIM
    diffs, shows = {}, {}
    for task in list(HELPS) + [CONTROL]:
        d = [ev(s, "thought", -1, task) - ev(s, "direct", -1, task) for s in per_seed]
        m, sd = ms(d)
        diffs[task] = {"mean": m, "std": sd, "per_seed": d}
        shows[task] = m > 0.05 and m > 2 * sd / math.sqrt(n)
    all_pos = any(all(x > 0 for x in diffs[t]["per_seed"]) for t in HELPS)
    if all(shows[t] for t in HELPS) and diffs[CONTROL]["mean"] <= 0.05: verdict = "reproduced"
    elif any(shows[t] for t in HELPS) or all_pos: verdict = "partial"
    else: verdict = "not reproduced"

    # ---- premise: a correct scratchpad helps M0 on the helping tasks; M0's own thoughts are mostly not useful yet
    P = {t: {k: ms([s["premise"][t][k] for s in per_seed])[0] for k in per_seed[0]["premise"][t]} for t in HELPS}
    per_task = {t: bool(P[t]["correct_scratchpad"] - P[t]["direct"] >= 0.2 and P[t]["correct_scratchpad"] - P[t]["generic_thought"] >= 0.2
                        and P[t]["sampled_correct_thought"] < 0.5 and (P[t].get("sampled_correct_given_attempt") or 0) >= 0.5) for t in HELPS}
    premise_holds = all(per_task.values())

    # ---- positive control (sums, the regime built for it): some sampled thoughts are correct, the response-only judge's
    # chosen outputs carry them more often than the rejected ones, and training spreads them and raises accuracy
    pairs0 = [s["arms"]["thought"]["thoughts"]["pairs"][0].get("sums") for s in per_seed]
    pc = {"m0_sampled_correct_thought_sums": P["sums"]["sampled_correct_thought"],
          "m0_prompts_with_a_correct_thought_sums": P["sums"]["prompts_with_a_correct_thought"],
          "chosen_correct_thought_round0": ms([p["chosen"] for p in pairs0 if p])[0],
          "rejected_correct_thought_round0": ms([p["rejected"] for p in pairs0 if p])[0],
          "greedy_correct_thought_sums_M0": arms["thought"]["sums_correct_thought_M0"],
          f"greedy_correct_thought_sums_M{R}": arms["thought"][f"sums_correct_thought_M{R}"],
          "thought_sums_accuracy_M0": arms["thought"]["sums_accuracy_M0"],
          f"thought_sums_accuracy_M{R}": arms["thought"][f"sums_accuracy_M{R}"],
          "thought_minus_direct_sums_per_seed": diffs["sums"]["per_seed"]}
    pc["m0_sampled_correct_given_attempt_sums"] = P["sums"].get("sampled_correct_given_attempt")
    pc_shows = (0.05 <= pc["m0_sampled_correct_thought_sums"] <= 0.5 and (pc["m0_sampled_correct_given_attempt_sums"] or 0) >= 0.5
                and pc["chosen_correct_thought_round0"] - pc["rejected_correct_thought_round0"] > 0.05
                and pc[f"greedy_correct_thought_sums_M{R}"] - pc["greedy_correct_thought_sums_M0"] > 0.1
                and pc[f"thought_sums_accuracy_M{R}"] - pc["thought_sums_accuracy_M0"] > 0.05)

    # ---- length control: response lengths per iteration under the length-biased judge, per rho; the tuned rho
    lc, tuned = {}, None
    for arm in [a for a in LENGTH_ARMS if a in args.arms]:
        rho = ARMS[arm][1]["rho"]
        lc[arm] = {"rho": rho, "response_length_by_iteration": arms[arm]["by_iteration"]["sums"]["response_length"],
                   "chosen_minus_rejected_length_by_round": arms[arm]["by_iteration"]["chosen_minus_rejected_length"],
                   f"sums_accuracy_M{R}": arms[arm][f"sums_accuracy_M{R}"]}
    for arm in sorted(lc, key=lambda a: lc[a]["rho"]):
        if lc[arm]["rho"] > 0 and lc[arm]["chosen_minus_rejected_length_by_round"][0] <= 0: tuned = lc[arm]["rho"]; break

    res = {
        "claim": CLAIM,
        "command": "python bench/thought.py" + (" --quick" if args.quick else "")
                   + (f" --pretrain-steps {args.pretrain_steps}" if args.pretrain_steps else "")
                   + (f" --useful {args.useful}" if args.useful is not None else "") + (f" --practice {args.practice}" if args.practice is not None else "") + (f" --sort-n {args.sort_n}" if args.sort_n else "") + (f" --lr {args.lr:g}" if args.lr else "")
                   + ((" --m0-dir" + ("" if args.m0_dir == M0_WORK else f" {args.m0_dir}")) if args.m0_dir else "")
                   + (f" --m0-seed {args.m0_seed}" if args.m0_seed is not None else "") + (" --m0-per-seed" if getattr(args, "m0_per_seed", False) else "") + (f" --deadline {args.deadline}" if args.deadline else "") + (f" --workers {args.workers} --arm-workers {args.arm_workers}") + (f" --tag {args.tag}" if args.tag else "") + (" --resume" if args.resume else "") + (f" --note {shlex.quote(args.note)}" if getattr(args, "note", "") else ""),
        "setup": {"tasks": base["task"]["difficulty"], "helping_tasks": list(HELPS), "control_task": CONTROL, "config": base,
                  "length_bias": LENGTH_BIAS, "rho_grid": list(RHOS), "length_arms_tasks": ["sums"], "seeds": args.seeds,
                  "wall_seconds": round(time.time() - t0, 1), "machine": machine_info(workers=args.workers, arm_workers=args.arm_workers)},
        "arms": arms, "verdict": verdict,
        "premise": {"what": "Per helping task, M0's greedy accuracy answering directly, after a forced correct scratchpad and "
                            "after a forced generic thought; and the share of its sampled thoughts (thought prompt, K=8, T=0.8) "
                            "that are the correct scratchpad. Holds if on sums and sort the correct scratchpad beats direct and "
                            "generic by >= 0.2, fewer than half of the sampled thoughts are correct (they are not useful yet), "
                            "and at least half of the sampled thoughts that attempt a scratchpad (are not a generic filler) are "
                            "right (the model can think; it mostly does not).",
                    "numbers": P, "holds": bool(premise_holds), "holds_per_task": per_task},
        "positive_control": {"what": "On sums, the regime built for it: M0 samples the correct scratchpad sometimes (5-50% of "
                                     "samples) and gets at least half of its attempted scratchpads right; the judge sees only responses, yet the chosen outputs of round 0 must carry the "
                                     "correct scratchpad more often than the rejected ones (by > 0.05), and training must raise "
                                     "the share of greedy thoughts that are correct (by > 0.1) and the sums accuracy (by > 0.05), "
                                     "if pairs are built and trained right.",
                             "numbers": pc, "shows": bool(pc_shows)},
        "notes": "",
        "differences": diffs,
        "length_control": {"arms": lc, "tuned_rho": tuned,
                           "rule": "the smallest rho of the grid whose round-0 chosen responses are on average not longer than "
                                   "the rejected ones (mean over seeds), as the paper tunes it"},
        "per_seed": [{k: v for k, v in s.items() if k not in ("arms", "m0")} | {"m0": m0_label(s["m0"], args)}
                     | {"arm_seconds": {a: s["arms"][a]["seconds"] for a in s["arms"]},
                        "pairs_correct_thought": s["arms"]["thought"]["thoughts"]["pairs"]} for s in per_seed],
    }
    res["notes"] = notes(res, R)
    if getattr(args, "m0_per_seed", False):
        res["notes"] += (f" Seed models: one per seed, each its own snapshot of the setting {setting_name(args.overrides)} at the "
                         f"smallest budget where that seed's M0 qualifies (bench/results/thought_m0.json picked_per_seed; "
                         f"SFT steps per seed {args.m0_steps}); their premise numbers are the ones above.")
    elif getattr(args, "m0_dir", None):
        res["notes"] += (f" Seed model: the snapshot bench/thought_m0.py picked by its rule (setting {setting_name(args.overrides)}, "
                         f"{args.overrides['pretrain_steps']} SFT steps; bench/results/thought_m0.json)"
                         + (f", the same seed-{args.m0_seed} M0 for every seed: the seeds vary the samples and the DPO data "
                            "order; the instructions and test problems are the same (task seed 0, so that none was a "
                            "pretraining problem)" if args.m0_seed is not None else ", one per seed") + ". Before this command, "
                         f"`python bench/thought_m0.py --settings {setting_name(args.overrides)} --budgets {args.overrides['pretrain_steps']} "
                         f"--seeds {args.m0_seed if args.m0_seed is not None else ' '.join(map(str, args.seeds))}` trains and probes "
                         "that snapshot (its premise numbers are the ones above).")
    if getattr(args, "note", ""): res["notes"] += " " + args.note
    lo = getattr(args, "left_out", None)
    if lo and (lo["seeds"] or lo["arms"]):
        res["notes"] += f" Past the --deadline, left out: seeds {lo['seeds']}, arms {lo['arms']} (not finished on every kept seed)."
    name = "thought" + (f"_{args.tag}" if args.tag else "")
    figure(arms, R, name)
    md = markdown(res, R).replace("(thought.png)", f"({name}.png)")
    ex = example_figure(Path(args.work) / f"seed{per_seed[0]['seed']}" / "thought", name)
    if ex:
        res["example"] = ex
        md += (f"\n\nOne test problem of each helping task through the iterations of the thinking arm (seed {per_seed[0]['seed']}; "
               "the first test problem whose greedy answer is wrong at M0 and right at the last model, else the first): "
               + "; ".join(f"{t}: test problem {v['index']}" + ("" if v["changed"] else " (none changed from wrong to right)") for t, v in ex.items()) + f"\n\n![example]({name}_example.png)")
    write_results(name, res, md)
    print(markdown(res, R))


def notes(res, R) -> str:
    a, P, d = res["arms"], res["premise"]["numbers"], res["differences"]
    t = "After %d iterations, greedy test accuracy thought vs direct: " % R + "; ".join(
        f"{task} {a['thought'][f'{task}_accuracy_M{R}']:.2f} vs {a['direct'][f'{task}_accuracy_M{R}']:.2f} "
        f"(M0 {a['thought'][f'{task}_accuracy_M0']:.2f} with the thought prompt, {a['direct'][f'{task}_accuracy_M0']:.2f} direct; "
        f"per-seed differences {', '.join(f'{x:+.2f}' for x in d[task]['per_seed'])})" for task in list(HELPS) + [CONTROL]) + ". "
    t += "M0 can use a correct scratchpad: " + "; ".join(
        f"{task} {P[task]['correct_scratchpad']:.2f} after a forced correct one vs {P[task]['direct']:.2f} direct and "
        f"{P[task]['generic_thought']:.2f} after a generic thought; {P[task]['sampled_correct_thought']:.1%} of its sampled thoughts "
        f"are the correct scratchpad ({P[task]['prompts_with_a_correct_thought']:.0%} of prompts have at least one among K=8)"
        for task in HELPS) + ". "
    by = lambda arm, task: " -> ".join(f"{x:.2f}" for x in a[arm]["by_iteration"][task]["accuracy"])
    t += (f"Greedy sums accuracy by iteration (mean over seeds): thinking {by('thought', 'sums')}, direct {by('direct', 'sums')}; "
          f"sort: thinking {by('thought', 'sort')}, direct {by('direct', 'sort')}. ")
    pc = res["positive_control"]["numbers"]
    t += (f"Selection by the response-only judge (sums, round 0): chosen outputs hold the correct scratchpad "
          f"{pc['chosen_correct_thought_round0']:.2f} of the time, rejected {pc['rejected_correct_thought_round0']:.2f}; the greedy "
          f"correct-scratchpad rate of the thinking model goes {pc['greedy_correct_thought_sums_M0']:.2f} -> "
          f"{pc[f'greedy_correct_thought_sums_M{R}']:.2f}. ")
    L = res["length_control"]
    if L["arms"]:
        t += ("Length-biased judge (exact + %.2f per response character, sums only): mean response length by iteration " % res["setup"]["length_bias"]
              + "; ".join(f"rho={v['rho']:g}: " + " -> ".join(f"{x:.1f}" for x in v["response_length_by_iteration"])
                          + f" (round-0 chosen minus rejected {v['chosen_minus_rejected_length_by_round'][0]:+.1f})" for v in L["arms"].values())
              + (f". The paper's tuning rule picks rho = {L['tuned_rho']:g}. " if L["tuned_rho"] is not None else
                 ". No rho of the grid makes chosen responses no longer than rejected ones. ")
              + "When all K responses of a prompt are equally right, the biased score's normalised value IS the normalised "
                "length, so rho < 1 only damps the length preference and rho > 1 reverses it; rho = 1 cancels it (no pair). ")
    m = res["setup"]["config"]["model"]
    t += (f"Both arms train each iteration with DPO plus the NLL of the chosen output (alpha = {res['setup']['config']['train']['alpha']:g}, "
          "IRPO; the paper reports no noticeable difference from plain DPO). ")
    t += (f"Scale: a from-scratch model (d_model {m['d_model']}, {m['n_layers']} layers, {m['pretrain_steps']} SFT steps, "
          f"{m['useful']:.0%} correct scratchpads among its thought records, a worked-solution record for {m.get('practice', 0):.0%} of "
          f"its scratchpad problems), {res['setup']['config']['task']['n_train']} instructions "
          "per task per iteration; the paper's effect (general instructions, 8B model, 5,000 prompts, ArmoRM judge) is not what "
          "is measured here, only the mechanism: whether judging responses alone can teach a model to think usefully where "
          "thinking helps, and not where it cannot.")
    return t


def markdown(res, R) -> str:
    a = res["arms"]
    lines = [f"# Thought Preference Optimization: thinking vs direct ({res['verdict']})", "", f"**Claim.** {res['claim']}", "",
             f"Command: `{res['command']}` ({res['setup']['wall_seconds']:.0f} s, seeds {res['setup']['seeds']})", "",
             "Greedy test accuracy (mean ± std over seeds) and the share of greedy thoughts that are the correct scratchpad:", "",
             "| arm | task | acc M0 | acc M%d | correct thought M0 | correct thought M%d | thought len M%d | response len M%d |" % (R, R, R, R),
             "|---|---|---|---|---|---|---|---|"]
    for arm, v in a.items():
        for task in v["by_iteration"]:
            if task == "chosen_minus_rejected_length": continue
            lines.append(f"| {arm} | {task} | {v[f'{task}_accuracy_M0']:.3f} | {v[f'{task}_accuracy_M{R}']:.3f} ± "
                         f"{v[f'{task}_accuracy_M{R}_std']:.3f} | {v[f'{task}_correct_thought_M0']:.3f} | "
                         f"{v[f'{task}_correct_thought_M{R}']:.3f} | {v[f'{task}_thought_length_M{R}']:.1f} | {v[f'{task}_response_length_M{R}']:.1f} |")
    lines += ["", f"**Premise** (holds: {res['premise']['holds']}; per task: "
              + ", ".join(f"{t} {v}" for t, v in res['premise'].get('holds_per_task', {}).items()) + f"): {res['premise']['what']}", "",
              "```", json.dumps(res["premise"]["numbers"], indent=1), "```", "",
              f"**Positive control** (shows: {res['positive_control']['shows']}): {res['positive_control']['what']}", "",
              "```", json.dumps(res["positive_control"]["numbers"], indent=1), "```", "",
              "**Length control** (length-biased judge, sums): response length by iteration, per rho "
              f"(tuned rho: {res['length_control']['tuned_rho']}; rule: {res['length_control']['rule']})", "",
              "| arm | rho | response length M0..M%d | chosen - rejected length, by round | sums acc M%d |" % (R, R), "|---|---|---|---|---|"]
    for arm, v in res["length_control"]["arms"].items():
        lines.append(f"| {arm} | {v['rho']:g} | {' -> '.join(f'{x:.1f}' for x in v['response_length_by_iteration'])} | "
                     f"{', '.join(f'{x:+.1f}' for x in v['chosen_minus_rejected_length_by_round'])} | {v[f'sums_accuracy_M{R}']:.3f} |")
    lines += ["", f"**Verdict: {res['verdict']}.** Thought minus direct (last iteration): " + "; ".join(
        f"{t} mean {v['mean']:+.3f} (std {v['std']:.3f}, per seed {', '.join(f'{x:+.2f}' for x in v['per_seed'])})"
        for t, v in res["differences"].items()), "", f"**Notes.** {res['notes']}", "", "![by iteration](thought.png)"]
    return "\n".join(lines)


def pick_example(run_dir: Path, task: str) -> dict:
    "The first `task` test problem whose greedy answer is wrong at M0 and right at the arm's last model (else the first one)."
    from latent_lm.core import read_jsonl
    from latent_lm.thought.app import example_rows
    n = sum(r["task"] == task for r in read_jsonl(Path(run_dir) / "thought" / "eval" / "m0.jsonl"))
    rows = [example_rows(run_dir, "thought", task, i) for i in range(n)]
    i = next((i for i, r in enumerate(rows) if not r[0]["correct"] and r[-1]["correct"]), 0)
    return {"index": i, "key": rows[i][0]["key"], "changed": bool(not rows[i][0]["correct"] and rows[i][-1]["correct"])}


def example_figure(run_dir: Path, name: str) -> dict | None:
    """bench/results/<name>_example.png: per helping task, one test problem's greedy thought and response at every model of
    the thinking arm (`latent_lm.thought.app.plot_example`). None when the run folder is gone."""
    if not (run_dir / "thought" / "eval").exists(): return None
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from latent_lm.thought.app import plot_example
    out = {}
    fig, axes = plt.subplots(len(HELPS), 1, figsize=(10, 2.2 * len(HELPS) + 0.6))
    for task, ax in zip(HELPS, axes):
        out[task] = pick_example(run_dir, task)
        plot_example(run_dir, "thought", task, out[task]["index"], ax)
    fig.tight_layout(); fig.savefig(ROOT / "bench" / "results" / f"{name}_example.png", dpi=110); plt.close(fig)
    return out


def figure(arms, R, name="thought"):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.4))
    xs = list(range(R + 1))
    for i, arm in enumerate(("thought", "direct")):
        for task, ls in zip(TASKS, ("-", "--", ":")):
            axes[0].plot(xs, arms[arm]["by_iteration"][task]["accuracy"], ls, marker="o", color=f"C{i}", label=f"{arm} {task}")
    for task, ls in zip(HELPS, ("-", "--")):
        axes[1].plot(xs, arms["thought"]["by_iteration"][task]["correct_thought"], ls, marker="o", color="C0", label=f"{task}: correct scratchpad")
        axes[1].plot(xs, [x / 100 for x in arms["thought"]["by_iteration"][task]["thought_length"]], ls, marker="s", color="C3",
                     label=f"{task}: thought length / 100")
    for j, arm in enumerate([a for a in arms if a.startswith("thought_lenbias")]):
        axes[2].plot(xs, arms[arm]["by_iteration"]["sums"]["response_length"], "-o", color=f"C{j + 2}", label=f"rho={ARMS[arm][1]['rho']:g}")
        axes[3].plot(list(range(R)), arms[arm]["by_iteration"]["chosen_minus_rejected_length"], "-o", color=f"C{j + 2}", label=f"rho={ARMS[arm][1]['rho']:g}")
    axes[0].set_title("test accuracy, thought vs direct (mean over seeds)"); axes[1].set_title("thinking arm: greedy thoughts")
    axes[2].set_title("length-biased judge: response length (sums)"); axes[3].set_title("chosen - rejected response length")
    for ax in axes[:3]: ax.set_xticks(xs, [f"M{x}" for x in xs])
    axes[3].set_xticks(list(range(R)), [f"round {x}" for x in range(R)]); axes[3].axhline(0, color="k", lw=.5)
    for ax in axes: ax.grid(alpha=.3); ax.legend(fontsize=7)
    fig.tight_layout()
    out = ROOT / "bench" / "results"; out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=110); plt.close(fig)


if __name__ == "__main__":
    main()
