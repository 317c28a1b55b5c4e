"""Benchmark: does a judge trained on its own synthetic judgements (the Self-Taught Evaluator) get more accurate over
iterations, without human labels?

Setup (the honest tiny version of the paper, spec section G.6):

* Instructions: 2-step arithmetic word problems (`latent_lm.tasks`). A pair is the worked solution of the question (y_w)
  against the worked solution of a modified question x' whose start count is changed (y_l: a good answer to the wrong
  question; `pairs.change: start`). The winner is known by construction; its position (A/B) is random.
* Seed judge J0: a tiny model trained from scratch on judgement demonstrations (the start count it reads in the question
  and in answers A and B, then [[A]]/[[B]]: the answer that starts from the question's count wins), stopped as soon as its greedy verdicts on dev pairs reach the target accuracy:
  weak but better than chance. Trained once per benchmark run and shared by every arm and seed (seeds vary the
  judgement sampling, the selection and the training).
* Arms (each on the same training instructions, iterations restart SFT from J0 as the paper does):
    ste        the method: J_i samples N judgements per pair, rejection sampling keeps one that agrees with the synthetic
               label, balanced A/B; J_{i+1} = SFT of J0 on them
    no_label   the same loop with a random readable judgement per pair, whatever its verdict (no label signal)
    teacher    positive control: iteration 1's judgements come from G.6's noisy programmatic teacher (it reads the
               question right with probability 0.6, else misreads one number, and judges by what it read) and are
               rejection-sampled against the label; the kept judgements then carry mostly right readings, so SFT on them
               must beat J0
* Metrics on held-out pairs: greedy pairwise accuracy in both orders (mean), position-consistent accuracy; on transfer
  pairs (correct vs plausible-wrong answer to the SAME question, never built in training) the same; how often the judge
  reads the question's numbers right (rationale accuracy).

Run: python bench/evaluator.py --quick    (writes bench/results/evaluator.json, .md, evaluator.png, evaluator_funnel.png)
     On a loaded machine, after the seed judge exists, `--runs-only --seeds S` per seed in parallel, then the plain command
     (it resumes the finished runs and writes the results).
"""
from __future__ import annotations
import argparse, json, math, shutil, statistics, sys, time
from pathlib import Path

from _common import ROOT, bench_env, machine_info, arm_stats, write_results
bench_env()

CLAIM = ("A judge trained iteratively on its own synthetic judgements, kept by rejection sampling against a label that comes "
         "from how the pair was built (no human label), becomes more accurate. Verdict rule, on mean held-out pairwise accuracy "
         "(greedy, both orders) over seeds: gain = ste(last iteration) - J0; 'reproduced' if gain > 2 standard errors of the "
         "seed mean and > 0 in every seed, and the ste arm beats the no_label arm at iteration 1; 'partial' if gain > 0 in the "
         "mean but not significant or not in every seed; 'not reproduced' otherwise.")
POSITIVE_CONTROL = ("iteration 1 from a noisy programmatic teacher (p_read = 0.6) rejection-sampled against the label: its kept "
                    "judgements carry mostly correct readings, so SFT of J0 on them must raise accuracy above J0 if the loop "
                    "(selection, SFT from the seed, evaluation) is right")


def base_config(quick: bool) -> dict:
    return {
        "pairs": {"difficulty": {"n_steps": 2, "ops": "+-", "max_start": 15, "max_operand": 9}, "n_train": 160 if quick else 512,
                  "n_test": 80 if quick else 300, "n_transfer": 80 if quick else 300, "max_delta": 3, "change": "start", "seed": 0},
        "model": {"init": "tiny", "tokenizer": "task", "d_model": 64, "n_layers": 4, "n_heads": 4, "max_len": 256,
                  "pretrain_problems": 3000, "pretrain_paths": "one", "pretrain_steps": 600, "pretrain_lr": 3e-3,
                  "pretrain_batch_size": 32, "target_accuracy": 0.65, "eval_every": 30, "fine_eval_every": 30, "n_dev": 40},
        "sampling": {"k": 4 if quick else 8, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 24, "batch_size": 256,
                     "teacher_accuracy": 0.6},
        "select": {"balance": True},
        "train": {"from_seed": True, "lr": 1e-3, "epochs": 2, "batch_size": 16, "lr_schedule": "cosine", "checkpoint": False},
        "eval": {"k": 1},
    }


ARMS = {"ste": {"select": {"mode": "agree"}, "sampling": {"first": "model"}},
        "no_label": {"select": {"mode": "any"}, "sampling": {"first": "model"}},
        "teacher": {"select": {"mode": "agree"}, "sampling": {"first": "teacher"}}}


def merge(a: dict, b: dict) -> dict:
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def mean_se(xs):
    xs = [float(x) for x in xs]
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else 0.0)


METRICS = ("accuracy", "consistent", "transfer_accuracy", "transfer_consistent", "rationale_accuracy")


def kept_fully_right(run_dir: Path, k: int, full: bool = False) -> float:
    "Share of iteration k+1's kept SFT judgements that read the question AND both answers right (recomputed from the run's files)."
    from latent_lm.core import read_jsonl
    from latent_lm.evaluator.data import judgement_text
    d = Path(run_dir) / f"round_{k}"
    pairs = {json.dumps(p["key"]): p for p in read_jsonl(d / "prompts.jsonl")}
    sft = [r for r in read_jsonl(d / "selected.jsonl") if r.get("kind") == "sft"]
    ok = [r["completion"] == judgement_text(p["input"], p["response_a"], p["response_b"], guess=r["verdict"], full=full)
          for r in sft for p in [pairs[json.dumps(r["key"])]]]
    return sum(ok) / len(ok) if ok else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small version (about 15 minutes on 2 loaded cores)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=None, help="iterations of the ste arm (default 2 quick, 3 full)")
    ap.add_argument("--work", default="/tmp/latent_lm_bench_evaluator", help="scratch folder for the runs")
    ap.add_argument("--runs-only", action="store_true", help="run (or resume) the arms of --seeds and stop without writing results: start "
                    "one such process per seed to use several cores, then run the plain command, which resumes the finished runs")
    args = ap.parse_args(argv)
    from latent_lm.evaluator.run import EvaluatorRun, load_config, train_seed_judge
    t0 = time.time()
    work = Path(args.work); work.mkdir(parents=True, exist_ok=True)
    base = base_config(args.quick)
    its = args.iterations or (2 if args.quick else 3)
    iters = {"ste": its, "no_label": 1 if args.quick else its, "teacher": 1}
    # the seed judge, once (it is a run's init model; every arm and seed starts from this folder)
    seed_dir = work / "seed_judge"
    info = train_seed_judge(load_config({**base, "run_dir": str(work / "unused")}), seed_dir)
    print(f"seed judge: {info.get('steps')} steps, dev accuracy {info.get('dev_accuracy')}  ({time.time() - t0:.0f} s)", flush=True)
    per = {a: [] for a in ARMS}
    for seed in args.seeds:
        for arm, over in ARMS.items():
            cfg = merge(base, over)
            cfg.update(run_dir=str(work / f"{arm}_s{seed}"), iterations=iters[arm], seed=seed)
            cfg["model"]["init"] = str(seed_dir)
            s = EvaluatorRun(load_config(cfg)).run()
            per[arm].append(s)
            print(f"seed {seed} {arm}: " + " -> ".join(f"{j['accuracy']:.3f}" for j in s["judges"]) + f"  ({time.time() - t0:.0f} s)", flush=True)
    if args.runs_only: return 0
    # arms: per judge index, metric -> mean over seeds
    arms = {}
    for arm, ss in per.items():
        for i in range(len(ss[0]["judges"])):
            name = "J0" if i == 0 else f"{arm}_J{i}"
            if i == 0 and "J0" in arms: continue
            arms[name] = arm_stats({m: [s["judges"][i][m] for s in ss] for m in METRICS if m in ss[0]["judges"][i]}, args.seeds)
            if i > 0:
                it = [s["iterations"][i - 1] for s in ss]
                arms[name].update(arm_stats({"agree_rate": [x["agree_rate"] for x in it], "kept": [x["kept"] for x in it],
                                             "kept_fully_right": [kept_fully_right(s["run_dir"], i - 1) for s in ss]}, args.seeds),
                                  seeds=args.seeds)
    # verdict from the arms, by the rule in CLAIM
    j0 = [s["judges"][0]["accuracy"] for s in per["ste"]]
    last = [s["judges"][-1]["accuracy"] for s in per["ste"]]
    gains = [b - a for a, b in zip(j0, last)]
    g, g_se = mean_se(gains)
    ste1 = statistics.fmean(s["judges"][1]["accuracy"] for s in per["ste"])
    nol1 = statistics.fmean(s["judges"][1]["accuracy"] for s in per["no_label"])
    if g > 2 * g_se and all(x > 0 for x in gains) and ste1 > nol1: verdict = "reproduced"
    elif g > 0: verdict = "partial"
    else: verdict = "not reproduced"
    # premise: J0 weak but better than chance; agreeing judgements carry right solutions more often than the others
    sel0 = [s["iterations"][0] for s in per["ste"]]
    j0acc = per["ste"][0]["judges"][0]["accuracy"]
    rc_agree = statistics.fmean(x["rationale_correct_if_agree"] for x in sel0)
    rc_dis = statistics.fmean(x["rationale_correct_if_disagree"] for x in sel0 if x["rationale_correct_if_disagree"] is not None)
    premise = {"what": ("the seed judge is weak but better than chance (held-out accuracy, both orders, between 0.55 and 0.85), and "
                        "rejection sampling selects for better reasoning: judgements that agree with the synthetic label read the "
                        "question's numbers right more often than those that do not"),
               "numbers": {"J0_accuracy": j0acc, "J0_consistent": per["ste"][0]["judges"][0]["consistent"],
                           "J0_transfer_accuracy": per["ste"][0]["judges"][0]["transfer_accuracy"],
                           "J0_rationale_accuracy": per["ste"][0]["judges"][0].get("rationale_accuracy"),
                           "iteration1_agree_rate": statistics.fmean(x["agree_rate"] for x in sel0),
                           "rationale_correct_if_agree": rc_agree, "rationale_correct_if_disagree": rc_dis,
                           "ste_iteration1_kept_fully_right": arms["ste_J1"]["kept_fully_right"],
                           "teacher_iteration1_kept_fully_right": arms["teacher_J1"]["kept_fully_right"],
                           "seed_judge_steps": info.get("steps"), "seed_judge_dev_accuracy": info.get("dev_accuracy")},
               "holds": bool(0.55 <= j0acc <= 0.85 and rc_agree > rc_dis)}
    t1 = [s["judges"][1]["accuracy"] for s in per["teacher"]]
    tg, tg_se = mean_se([b - a for a, b in zip(j0, t1)])
    pc = {"what": POSITIVE_CONTROL,
          "numbers": {"J0_accuracy": statistics.fmean(j0), "teacher_J1_accuracy": statistics.fmean(t1), "gain": tg, "gain_se": tg_se,
                      "teacher_agree_rate": statistics.fmean(s["iterations"][0]["agree_rate"] for s in per["teacher"]),
                      "teacher_kept_rationale_correct": statistics.fmean(s["iterations"][0].get("kept_rationale_correct", float("nan")) for s in per["teacher"])},
          "shows": bool(tg > 2 * tg_se and tg > 0)}
    c = base
    setup = {"task": "2-step +/- arithmetic word problems (latent_lm.tasks); pairs: solution of x vs solution of x' (start count changed)",
             "seed_judge": {k: c["model"][k] for k in ("d_model", "n_layers", "n_heads", "pretrain_problems", "target_accuracy")} | {"steps": info.get("steps")},
             "n_train_pairs": c["pairs"]["n_train"], "n_test_pairs": c["pairs"]["n_test"], "n_transfer_pairs": c["pairs"]["n_transfer"],
             "judgements_per_pair": c["sampling"]["k"], "temperature": c["sampling"]["temperature"], "iterations": iters,
             "sft": {k: c["train"][k] for k in ("lr", "epochs", "batch_size", "lr_schedule")}, "seeds": args.seeds,
             "wall_seconds": round(time.time() - t0), "machine": machine_info()}
    notes = (f"Accuracy = greedy verdict right, averaged over both orders of each held-out pair (chance 0.5; an unreadable verdict "
             f"counts as wrong); position-consistent = right in both orders. One seed judge (trained once, {info.get('steps')} steps, "
             f"dev accuracy {info.get('dev_accuracy')}) starts every arm and seed; seeds vary judgement sampling, selection and SFT, the "
             f"held-out pairs are the same. The judge's reasoning is the start count it reads in the question and in each answer; "
             f"'rationale accuracy' is how often its reading of the question is right, and 'kept fully right' how often a kept "
             f"judgement read the question and both answers right (a right verdict can rest on a misread answer). That check cannot see "
             f"an arithmetic slip in an answer to the right question: on the transfer pairs (a slipped step, same question) a judge "
             f"that learned only it is at chance, which is G.6's warning about the construction's artifact made visible. With "
             f"{c['pairs']['n_test']} pairs x 2 orders the standard error of one accuracy is about "
             f"{math.sqrt(0.25 / (2 * c['pairs']['n_test'])):.3f}. At this size an iteration trains on at most {c['pairs']['n_train']} "
             f"kept judgements; the paper uses ~20k instructions and N = 15. setup.wall_seconds is this process's time: runs that "
             f"--runs-only workers finished before it are resumed, not redone, and their time is not in it.")
    res = {"claim": CLAIM, "command": "python bench/evaluator.py" + (" --quick" if args.quick else ""), "setup": setup, "arms": arms,
           "verdict": verdict, "premise": premise, "positive_control": pc, "notes": notes,
           "gain": {"mean": g, "se": g_se, "per_seed": gains, "ste_J1": ste1, "no_label_J1": nol1}}
    plot(per, ROOT / "bench" / "results")
    write_results("evaluator", res, md_text(res))
    print(md_text(res))
    return 0


def md_text(res: dict) -> str:
    rows = ["| judge | accuracy | position-consistent | transfer accuracy | rationale accuracy | agree rate | kept | kept fully right |",
            "|---|---|---|---|---|---|---|---|"]
    f = lambda a, k: f"{a[k]:.3f} ± {a[k + '_std']:.3f}" if k in a else "-"
    for name, a in res["arms"].items():
        rows.append(f"| {name} | {f(a, 'accuracy')} | {f(a, 'consistent')} | {f(a, 'transfer_accuracy')} | {f(a, 'rationale_accuracy')} | "
                    f"{f(a, 'agree_rate')} | {f(a, 'kept')} | {f(a, 'kept_fully_right')} |")
    p, pc = res["premise"], res["positive_control"]
    return "\n".join([
        "# Self-Taught Evaluator: judge accuracy over iterations, no human labels", "", f"**Claim and verdict rule.** {res['claim']}", "",
        f"**Verdict: {res['verdict']}** (gain of ste over J0: {res['gain']['mean']:+.3f} ± {res['gain']['se']:.3f} SE; per seed "
        + ", ".join(f"{x:+.3f}" for x in res["gain"]["per_seed"]) + f"; iteration 1: ste {res['gain']['ste_J1']:.3f} vs no_label "
        f"{res['gain']['no_label_J1']:.3f})", "", f"Command: `{res['command']}` ({res['setup']['wall_seconds']} s)", "",
        "Mean ± std over seeds " + str(res["setup"]["seeds"]) + ":", "", *rows, "",
        f"**Premise** ({'holds' if p['holds'] else 'does not hold'}): {p['what']}. " + ", ".join(f"{k} = {v:.3f}" if isinstance(v, float) else f"{k} = {v}" for k, v in p["numbers"].items()) + ".", "",
        f"**Positive control** ({'shows' if pc['shows'] else 'does not show'}): {pc['what']}. " + ", ".join(f"{k} = {v:.3f}" for k, v in pc["numbers"].items()) + ".", "",
        f"**Notes.** {res['notes']}", "", "![judge accuracy by iteration](evaluator.png)", "", "![rejection-sampling funnel](evaluator_funnel.png)"])


def plot(per: dict, out: Path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from latent_lm.evaluator.app import plot_funnel
    out.mkdir(parents=True, exist_ok=True)
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, metric, title in ((axs[0], "accuracy", "held-out pairs (both orders)"), (axs[1], "transfer_accuracy", "transfer pairs")):
        for i, (arm, ss) in enumerate(per.items()):
            n = len(ss[0]["judges"])
            ms = [statistics.fmean(s["judges"][j][metric] for s in ss) for j in range(n)]
            sd = [statistics.stdev(s["judges"][j][metric] for s in ss) if len(ss) > 1 else 0 for j in range(n)]
            ax.errorbar(range(n), ms, yerr=sd, marker="o", capsize=3, color=f"C{i}", label=arm)
            if metric == "accuracy":
                ax.plot(range(n), [statistics.fmean(s["judges"][j]["consistent"] for s in ss) for j in range(n)], ":", color=f"C{i}",
                        label=f"{arm}: position-consistent")
        n_max = max(len(ss[0]["judges"]) for ss in per.values())
        ax.set_xticks(range(n_max), [f"J{i}" for i in range(n_max)])
        ax.axhline(0.5, color="gray", lw=.8, ls="--"); ax.set_xlabel("judge (J0 = seed, J_i after iteration i)")
        ax.set_title(title); ax.grid(alpha=.3); ax.set_ylim(0, 1)
    axs[0].set_ylabel("pairwise accuracy"); axs[0].legend(fontsize=7)
    fig.tight_layout(); fig.savefig(out / "evaluator.png", dpi=110); plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 3.6)); plot_funnel(per["ste"][0], ax); ax.set_title("ste, seed 0: judgements surviving rejection sampling")
    fig.tight_layout(); fig.savefig(out / "evaluator_funnel.png", dpi=110); plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
