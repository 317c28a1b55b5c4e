"""Benchmark: after a few iterations of Thought Preference Optimization, does the thinking model beat the direct-response
baseline trained the same way, on a task where a scratchpad helps, and not on a control where it cannot?

Setup (the honest tiny version of the paper's experiment, spec section C.6):

* Tasks (latent_lm.tasks): `sums` of several single-digit numbers (a scratchpad of partial sums turns one hard
  one-pass addition into easy two-number steps) and `lookup` in a small key-value list (one attention look-up; nothing
  to think through: the control). Both are mixed in every round, like the paper's general instructions.
* Seed model M0: a small Llama-style model trained from scratch on direct answers and on the paper's generic thought
  format, where only a fraction of the thoughts are correct partial sums and the rest generic filler: it follows the
  format but its thoughts are mostly not useful yet.
* Arms (per seed, the same M0, the same fresh instructions, K samples, judge and DPO settings per iteration):
    thought            the paper's method: thought prompt, judge on the response alone, best-vs-worst full outputs
    direct             the baseline: the instruction alone, the same loop
    thought_lenbias    thought, with a length-biased judge (exact + bias per response character), no length control
    thought_lenbias_lc the same judge with the paper's length control (rho)
* Metrics on held-out problems per task: accuracy of the greedy output (resampled on parse errors), win rate against
  M0 answering directly, thought and response lengths, useful-thought rate.

Run: python bench/thought.py --quick   (writes bench/results/thought.json, thought.md, thought.png)
"""
from __future__ import annotations
import argparse, json, math, shutil, statistics, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _common import ROOT, bench_env, machine_info, arm_stats, write_results
bench_env()

CLAIM = ("After a few iterations the thinking model (Thought Preference Optimization) beats the direct-response baseline "
         "trained the same way on a task where a scratchpad helps (sums), and not on a control where it cannot (lookup). "
         "Verdict rule on greedy test accuracy of the last iteration's models, over seeds: with d = thought - direct per "
         "seed, 'reproduced' if on sums mean(d) > 0.05 and mean(d) > 2 * std(d) / sqrt(n_seeds), and on lookup "
         "mean(d) <= 0.05; 'partial' if the sums condition holds but thinking also gains more than 0.05 on lookup, or if "
         "on sums mean(d) > 0 with d > 0 in every seed but the margin test fails; 'not reproduced' otherwise.")

SUMS = {"n_numbers": 5, "lo": 1, "hi": 9}
LOOKUP = {"n_keys": 4}


def base_config(quick: bool) -> dict:
    "The settings every arm shares (a `latent_lm.thought.run` config without run_dir, arms and judge)."
    return {
        "rounds": 2 if quick else 4, "prompt": "generic",
        "task": {"tasks": ["sums", "lookup"], "difficulty": {"sums": SUMS, "lookup": LOOKUP}, "n_train": 32 if quick else 128,
                 "n_test": 50 if quick else 200},
        "model": {"init": "tiny", "tokenizer": "task", "d_model": 32 if quick else 64, "n_layers": 2 if quick else 4, "n_heads": 4, "max_len": 256, "useful": 0.5,
                  "vocab_size": 512, "pretrain_problems": 4000, "pretrain_steps": 800 if quick else 4000, "pretrain_lr": 3e-3,
                  "pretrain_batch_size": 32, "target_accuracy": 1.0, "eval_every": 100000, "n_dev": 16},
        "sampling": {"k": 8, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 128, "batch_size": 256},
        "train": {"beta": 0.1, "alpha": 0.0, "lr": 5e-4, "epochs": 3, "batch_size": 16, "lr_schedule": "cosine", "checkpoint": False},
        "eval": {"resample": 2, "temperature": 0.8, "max_new_tokens": 128},
    }


LENGTH_BIAS, RHO = 0.02, 0.5
ARMS = {  # arm -> (arms of the run, judge section)
    "thought": ("thought", {"kind": "exact", "rho": 0.0}),
    "direct": ("direct", {"kind": "exact", "rho": 0.0}),
    "thought_lenbias": ("thought", {"kind": "length_biased", "length_bias": LENGTH_BIAS, "rho": 0.0}),
    "thought_lenbias_lc": ("thought", {"kind": "length_biased", "length_bias": LENGTH_BIAS, "rho": RHO}),
}


def premise(m0: str, cfg, n: int = 100) -> dict:
    "Accuracy of M0 on sums test problems: direct; after a forced correct scratchpad; after a forced generic thought; free sampling with the thought prompt."
    from latent_lm.lm import load_lm
    from latent_lm.generate import HFGenerator
    from latent_lm.tasks import scratch_problems, check_scratch
    from latent_lm.thought.core import thought_prompt, parse_output, GENERIC_THOUGHTS, MARKERS
    from latent_lm.thought.run import _seed
    m, tok = load_lm(m0)
    gen = HFGenerator(m, tok, batch_size=128)
    test = scratch_problems("sums", n, seed=_seed(cfg.task.seed, "test", "sums"), **SUMS)
    tm, rm = MARKERS["generic"]
    def acc(kind, prefill=None):                 # prefill: the forced start of the output (thought marker, thought, response marker)
        outs = gen.generate([thought_prompt(p["question"], kind) for p in test], n=1, temperature=0, max_new_tokens=40, chat=False,
                            prefill=prefill)
        return sum(check_scratch(o[0].text, p["answer"]) for o, p in zip(outs, test)) / len(test)
    out = {"direct": acc("direct"),
           "correct_scratchpad": acc("generic", [f"{tm} {p['thought']}\n{rm}" for p in test]),
           "generic_thought": acc("generic", [f"{tm} {GENERIC_THOUGHTS[0]}\n{rm}" for p in test])}
    samples = gen.generate([thought_prompt(p["question"]) for p in test], n=8, temperature=0.8, top_p=0.95, max_new_tokens=128, chat=False, seed=0)
    parsed = [(parse_output(c.text), p) for cs, p in zip(samples, test) for c in cs]
    from latent_lm.tasks import check_steps
    useful = [q.ok and "=" in q.thought for q, _ in parsed]
    out["sampled_correct_worked_sum_rate"] = sum(q.ok and bool(check_steps(q.thought)) and all(check_steps(q.thought)) for q, _ in parsed) / len(parsed)
    out["sampled_parse_error"] = sum(not q.ok for q, _ in parsed) / len(parsed)
    out["sampled_thought_accuracy"] = sum(q.ok and check_scratch(q.response, p["answer"]) for q, p in parsed) / len(parsed)
    out["sampled_worked_sum_rate"] = sum(useful) / len(parsed)
    ok_u = [check_scratch(q.response, p["answer"]) for (q, p), u in zip(parsed, useful) if u]
    ok_g = [check_scratch(q.response, p["answer"]) for (q, p), u in zip(parsed, useful) if q.ok and not u]
    out["sampled_accuracy_worked_sum_thought"] = sum(ok_u) / len(ok_u) if ok_u else None
    out["sampled_accuracy_generic_thought"] = sum(ok_g) / len(ok_g) if ok_g else None
    return out


PRETRAIN_STEPS = None


def run_seed(seed: int, quick: bool, work: str, arms: list[str], pretrain_steps=None) -> dict:
    "Seed model, premise, and every arm for one seed (one process)."
    from latent_lm.thought.run import load_config, ThoughtRun, seed_model
    import torch; torch.set_num_threads(1)
    t0 = time.time()
    sdir = Path(work) / f"seed{seed}"; sdir.mkdir(parents=True, exist_ok=True)
    base = base_config(quick)
    if pretrain_steps: base["model"]["pretrain_steps"] = pretrain_steps
    cfg0 = load_config({**base, "seed": seed, "run_dir": str(sdir / "m0cfg")})
    m0 = seed_model(cfg0, sdir / "init_model")
    out = {"seed": seed, "m0_seconds": time.time() - t0, "premise": premise(m0, cfg0), "arms": {}}
    for name in arms:
        which, judge = ARMS[name]
        d = {**json.loads(json.dumps(base)), "seed": seed, "run_dir": str(sdir / name), "arms": [which], "judge": judge}
        d["model"]["init"] = m0
        t = time.time()
        s = ThoughtRun(load_config(d)).run()
        a = s["arms"][which]
        out["arms"][name] = {"models": [{"model": m["model"], "eval": m["eval"]} for m in a["models"]], "rounds": a["rounds"],
                             "seconds": time.time() - t}
        if name == "thought":                # which thoughts did the response-only judge pick? (round 0, sums)
            from latent_lm.core import read_jsonl
            from latent_lm.thought.core import parse_output
            pairs = [r for r in read_jsonl(sdir / name / "thought" / "round_0" / "selected.jsonl") if r["task"] == "sums"]
            if pairs:
                u = lambda t: "=" in parse_output(t).thought
                out["pairs_useful"] = {"chosen": sum(u(r["chosen"]) for r in pairs) / len(pairs),
                                       "rejected": sum(u(r["rejected"]) for r in pairs) / len(pairs), "n": len(pairs)}
        print(f"seed {seed} {name}: " + " ".join(f"{m['model']} sums {m['eval']['sums']['accuracy']:.2f} lookup "
              f"{m['eval']['lookup']['accuracy']:.2f}" for m in a["models"]), file=sys.stderr, flush=True)
    return out


def ms(xs):
    xs = [float(x) for x in xs if x is not None]
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (None, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small setting (about 15 minutes on 2 loaded cores)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=3, help="seeds run in parallel processes, one thread each")
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--work", default="/tmp/latent_lm_bench_thought")
    ap.add_argument("--pretrain-steps", type=int, default=None, help="seed-model SFT steps (default: the setting's)")
    ap.add_argument("--tag", default="", help="write bench/results/thought_<tag>.* instead of thought.*")
    ap.add_argument("--rebuild", action="store_true", help="only redo the results file from a finished run's work folder (per_seed.json)")
    args = ap.parse_args()
    t0 = time.time()
    work = Path(args.work)
    if args.rebuild:
        per_seed = json.loads((work / "per_seed.json").read_text())
        name = "thought" + (f"_{args.tag}" if args.tag else "")
        return aggregate(per_seed, args, t0 - json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())["setup"]["wall_seconds"])
    if work.exists(): shutil.rmtree(work)
    with ProcessPoolExecutor(max_workers=min(args.workers, len(args.seeds))) as ex:
        per_seed = list(ex.map(run_seed, args.seeds, [args.quick] * len(args.seeds), [str(work)] * len(args.seeds),
                               [args.arms] * len(args.seeds), [args.pretrain_steps] * len(args.seeds)))
    (work / "per_seed.json").write_text(json.dumps(per_seed))
    aggregate(per_seed, args, t0)


def aggregate(per_seed, args, t0):
    "The results file from the per-seed results: arms, verdict by the rule in CLAIM, premise, positive control, figure."
    base = base_config(args.quick)
    if args.pretrain_steps: base["model"]["pretrain_steps"] = args.pretrain_steps
    R = base["rounds"]
    last = lambda s, arm, task, key="accuracy": s["arms"][arm]["models"][-1]["eval"][task].get(key)
    first = lambda s, arm, task, key="accuracy": s["arms"][arm]["models"][0]["eval"][task].get(key)

    # ---- arms in the shared schema: metrics of the last iteration's model (and M0) per arm
    arms = {}
    for arm in args.arms:
        vals = {}
        for task in ("sums", "lookup"):
            for key in ("accuracy", "win_rate", "thought_length", "response_length", "useful_thought", "parse_error"):
                vals[f"{task}_{key}_M{R}"] = [last(s, arm, task, key) for s in per_seed]
            vals[f"{task}_accuracy_M0"] = [first(s, arm, task) for s in per_seed]
        vals["chosen_length_minus_rejected_round0"] = [s["arms"][arm]["rounds"][0]["chosen_length"] - s["arms"][arm]["rounds"][0]["rejected_length"]
                                                       for s in per_seed]
        vals["response_length_M0"] = [first(s, arm, "all", "response_length") for s in per_seed]
        vals[f"response_length_M{R}"] = [last(s, arm, "all", "response_length") for s in per_seed]
        arms[arm] = arm_stats(vals, args.seeds)
        arms[arm]["by_iteration"] = {task: {k: [ms([s["arms"][arm]["models"][i]["eval"][task].get(k) for s in per_seed])[0]
                                                for i in range(R + 1)] for k in ("accuracy", "win_rate", "thought_length", "response_length")}
                                     for task in ("sums", "lookup")}

    # ---- verdict, computed from the arms by the rule in CLAIM
    n = len(args.seeds)
    d_sums = [last(s, "thought", "sums") - last(s, "direct", "sums") for s in per_seed]
    d_look = [last(s, "thought", "lookup") - last(s, "direct", "lookup") for s in per_seed]
    m_s, sd_s = ms(d_sums); m_l, _ = ms(d_look)
    sums_ok = m_s > 0.05 and m_s > 2 * sd_s / math.sqrt(n)
    if sums_ok and m_l <= 0.05: verdict = "reproduced"
    elif sums_ok or (m_s > 0 and all(x > 0 for x in d_sums)): verdict = "partial"
    else: verdict = "not reproduced"

    # ---- premise: a correct scratchpad helps M0 on sums; M0's own thoughts are mostly not useful yet
    P = {k: ms([s["premise"][k] for s in per_seed])[0] for k in per_seed[0]["premise"]}
    premise_holds = (P["correct_scratchpad"] - P["direct"] >= 0.2 and P["correct_scratchpad"] - P["generic_thought"] >= 0.2
                     and P["sampled_correct_worked_sum_rate"] < 0.6)
    # ---- positive control: the judge, seeing responses only, selects useful thoughts, and training spreads them
    pc = {"chosen_minus_rejected_worked_sum_rate_round0": None,
          "useful_thought_rate_sums_M0": ms([first(s, "thought", "sums", "useful_thought") for s in per_seed])[0],
          f"useful_thought_rate_sums_M{R}": ms([last(s, "thought", "sums", "useful_thought") for s in per_seed])[0],
          "thought_sums_accuracy_gain": ms([last(s, "thought", "sums") - first(s, "thought", "sums") for s in per_seed])[0]}
    cu = [s["pairs_useful"] for s in per_seed if s.get("pairs_useful")]
    if cu: pc["chosen_minus_rejected_worked_sum_rate_round0"] = ms([c["chosen"] - c["rejected"] for c in cu])[0]
    pc_shows = pc[f"useful_thought_rate_sums_M{R}"] > pc["useful_thought_rate_sums_M0"] + 0.1 and pc["thought_sums_accuracy_gain"] > 0.05

    # ---- length control
    lc = {}
    if "thought_lenbias" in args.arms and "thought_lenbias_lc" in args.arms:
        for arm in ("thought_lenbias", "thought_lenbias_lc"):
            lc[arm] = {"response_length_M0": arms[arm]["response_length_M0"], f"response_length_M{R}": arms[arm][f"response_length_M{R}"],
                       "chosen_minus_rejected_length_round0": arms[arm]["chosen_length_minus_rejected_round0"]}

    res = {
        "claim": CLAIM,
        "command": "python bench/thought.py" + (" --quick" if args.quick else "") + (f" --pretrain-steps {args.pretrain_steps}" if args.pretrain_steps else "")
                   + (f" --tag {args.tag}" if args.tag else ""),
        "setup": {"tasks": {"sums": SUMS, "lookup": LOOKUP}, "config": base, "length_bias": LENGTH_BIAS, "rho": RHO,
                  "seeds": args.seeds, "wall_seconds": round(time.time() - t0, 1),
                  "machine": machine_info(workers=args.workers)},
        "arms": arms, "verdict": verdict,
        "premise": {"what": "M0's greedy accuracy on sums: answering directly, after a forced correct scratchpad, after a forced "
                            "generic thought; and its own sampled thoughts (how often they hold a worked sum). Holds if the correct "
                            "scratchpad beats direct and generic by >= 0.2 and fewer than 60% of sampled thoughts are correct worked sums.",
                    "numbers": P, "holds": bool(premise_holds)},
        "positive_control": {"what": "Inside the thinking arm: the judge sees only responses, yet training must raise the rate of "
                                     "greedy thoughts that are correct worked sums (by > 0.1) and the sums accuracy (by > 0.05) if pairs are built and "
                                     "trained right, since correct scratchpads make responses right.",
                             "numbers": pc, "shows": bool(pc_shows)},
        "notes": "",
        "differences": {"sums": {"mean": m_s, "std": sd_s, "per_seed": d_sums}, "lookup": {"mean": m_l, "per_seed": d_look}},
        "length_control": lc,
        "per_seed": [{k: v for k, v in s.items() if k != "arms"} | {"arm_seconds": {a: s["arms"][a]["seconds"] for a in s["arms"]}}
                     for s in per_seed],
    }
    res["notes"] = notes(res, R)
    name = "thought" + (f"_{args.tag}" if args.tag else "")
    figure(arms, R, name)
    write_results(name, res, markdown(res, R).replace("(thought.png)", f"({name}.png)"))
    print(markdown(res, R))


def notes(res, R) -> str:
    a = res["arms"]
    t = (f"Sums accuracy after {R} iterations: thought {a['thought'][f'sums_accuracy_M{R}']:.2f} vs direct "
         f"{a['direct'][f'sums_accuracy_M{R}']:.2f} (M0: {a['thought']['sums_accuracy_M0']:.2f} with the thought prompt, "
         f"{a['direct']['sums_accuracy_M0']:.2f} direct). Lookup: thought {a['thought'][f'lookup_accuracy_M{R}']:.2f} vs direct "
         f"{a['direct'][f'lookup_accuracy_M{R}']:.2f}. ")
    P = res["premise"]["numbers"]
    t += (f"M0 can use a correct scratchpad (sums accuracy {P['correct_scratchpad']:.2f} after a forced correct one, "
          f"{P['direct']:.2f} direct, {P['generic_thought']:.2f} after a generic thought), and {P['sampled_worked_sum_rate']:.0%} of its "
          f"sampled thoughts are worked sums, {P['sampled_correct_worked_sum_rate']:.2%} correct worked sums. ")
    if P["sampled_correct_worked_sum_rate"] < 0.05:
        t += ("The samples almost never hold a useful thought, so there is nothing for the response-only judge to select, and the "
              "positive control's regime (some useful sampled thoughts) is not reached at this training budget; a seed model "
              "trained longer (--pretrain-steps, or the non-quick setting) is needed. ")
    else:
        t += ("Useful thoughts are sampled, yet with 32 instructions per task and a few DPO steps per iteration the per-seed "
              "differences are large (see the per-seed numbers): the spread across seeds, not the mean, dominates at this budget. ")
    if res["length_control"]:
        lb, lc = res["length_control"]["thought_lenbias"], res["length_control"]["thought_lenbias_lc"]
        t += (f"Length-biased judge: mean response length M0 -> M{R} is {lb['response_length_M0']:.1f} -> {lb[f'response_length_M{R}']:.1f} "
              f"characters without length control and {lc['response_length_M0']:.1f} -> {lc[f'response_length_M{R}']:.1f} with rho={RHO}; "
              f"chosen minus rejected length in round 0: {lb['chosen_minus_rejected_length_round0']:+.1f} vs "
              f"{lc['chosen_minus_rejected_length_round0']:+.1f}. Length control subtracts rho times the normalised length from "
              "the normalised score; where the biased score is mostly length (few responses right), rho must approach 1 to cancel "
              "it, and a malformed rejected sample (empty response) is always shorter: the paper tunes rho until chosen responses "
              "are no longer than rejected ones, which rho = 0.5 does not achieve here. ")
    m = res["setup"]["config"]["model"]
    t += (f"Scale: a from-scratch model (d_model {m['d_model']}, {m['n_layers']} layers, {m['pretrain_steps']} SFT steps), "
          f"{res['setup']['config']['task']['n_train']} instructions per task per iteration; the paper's effect "
          "(general instructions, 8B model, 5,000 prompts, ArmoRM judge) is not what is measured here, only the mechanism: "
          "whether judging responses alone can teach a model to think usefully where thinking helps.")
    return t


def markdown(res, R) -> str:
    a = res["arms"]
    lines = [f"# Thought Preference Optimization: thinking vs direct ({res['verdict']})", "", f"**Claim.** {res['claim']}", "",
             f"Command: `{res['command']}` ({res['setup']['wall_seconds']:.0f} s, seeds {res['setup']['seeds']})", "",
             "| arm | sums acc M0 | sums acc M%d | lookup acc M0 | lookup acc M%d | sums win rate M%d | thought len M%d | response len M%d |" % (R, R, R, R, R),
             "|---|---|---|---|---|---|---|---|"]
    for arm, v in a.items():
        lines.append(f"| {arm} | {v['sums_accuracy_M0']:.3f} | {v[f'sums_accuracy_M{R}']:.3f} ± {v[f'sums_accuracy_M{R}_std']:.3f} | "
                     f"{v['lookup_accuracy_M0']:.3f} | {v[f'lookup_accuracy_M{R}']:.3f} ± {v[f'lookup_accuracy_M{R}_std']:.3f} | "
                     f"{v[f'sums_win_rate_M{R}']:.3f} | {v[f'sums_thought_length_M{R}']:.1f} | {v[f'response_length_M{R}']:.1f} |")
    lines += ["", f"**Premise** (holds: {res['premise']['holds']}): {res['premise']['what']}", "",
              "```", json.dumps(res["premise"]["numbers"], indent=1), "```", "",
              f"**Positive control** (shows: {res['positive_control']['shows']}): {res['positive_control']['what']}", "",
              "```", json.dumps(res["positive_control"]["numbers"], indent=1), "```", "",
              f"**Verdict: {res['verdict']}.** Thought minus direct (last iteration): sums {res['differences']['sums']}, "
              f"lookup {res['differences']['lookup']}", "", f"**Notes.** {res['notes']}", "", "![by iteration](thought.png)"]
    return "\n".join(lines)


def figure(arms, R, name="thought"):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    xs = list(range(R + 1))
    for i, (arm, v) in enumerate(arms.items()):
        for task, ls in (("sums", "-"), ("lookup", ":")):
            if arm in ("thought", "direct"):
                axes[0].plot(xs, v["by_iteration"][task]["accuracy"], ls, marker="o", color=f"C{i}", label=f"{arm} {task}")
        axes[1].plot(xs, v["by_iteration"]["sums"]["thought_length"], "-o", color=f"C{i}", label=arm)
        axes[2].plot(xs, v["by_iteration"]["sums"]["response_length"], "-o", color=f"C{i}", label=arm)
    axes[0].set_title("test accuracy (mean over seeds)"); axes[1].set_title("thought length, sums (chars)")
    axes[2].set_title("response length, sums (chars)")
    for ax in axes: ax.set_xticks(xs, [f"M{x}" for x in xs]); ax.grid(alpha=.3); ax.legend(fontsize=7)
    fig.tight_layout()
    out = ROOT / "bench" / "results"; out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=110); plt.close(fig)


if __name__ == "__main__":
    main()
