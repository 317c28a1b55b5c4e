"""Benchmark: does ScPO (training on the model's own majority votes, no labels) close most of the gap to training with
gold answers?

Setup (the honest tiny version of the paper's GSM8K experiment, spec section B.6):

* Task: generated arithmetic word problems with exact integer answers (`latent_lm.tasks.arithmetic_problems`) at the
  difficulty of the seed-model regime picked by the premise probe (bench/scpo_premise.py, `--regime`).
* Seed model M0: a small Llama-style model trained from scratch on every derivation of worked solutions at that
  difficulty: with `--init`, the premise probe's picked snapshot (one M0 for every seed: the seeds vary the round
  problems, the samples and the training); without it, one M0 per seed trained for `--pretrain-steps` steps.
* Arms, each two iterations (M1 from M0's samples, M2 from M1's), on the same fresh unlabeled problems per iteration:
    scpo        weighted DPO + NLL on most- vs least-voted responses, weight = vote margin / k (the method)
    unweighted  the same pairs, weight 1 (the paper's Table 4 ablation)
    irpo_gold   IRPO with gold answers: a correct vs an incorrect response, weight 1 (the upper reference)
    lmsi        SFT on the majority response (LMSI)
    semi        ScPO where a quarter of each round's problems keep their gold answer (the paper's semi-supervised variant)
  Round 0's samples come from M0 for every arm, so they are drawn once and shared.
* Metrics on held-out problems: greedy accuracy and self-consistency over k samples (SC@k) of M0, M1, M2; per round,
  how often the majority answer is right and how often a selected pair's chosen answer is right.
* Positive control (must show if the preference training works): on round 0's own problems, M1 of the ScPO arm answers
  greedily with the answer it was trained to prefer (the pair's chosen answer) more often than M0 did.

Results are rewritten after every finished arm (a run stopped by `--deadline` leaves the seeds and arms it finished,
and says so). Run: nice -n 10 python bench/scpo.py --quick --init <premise snapshot> --regime <regime>
"""
from __future__ import annotations
import argparse, datetime, json, math, shlex, shutil, statistics, sys, time
from pathlib import Path

from _common import ROOT, bench_env, machine_info, write_results
bench_env()

import torch

CLAIM = ("ScPO, trained on its own majority votes without labels, closes most of the gap to training with gold labels "
         "(IRPO_Gold): verdict rule on mean greedy test accuracy after iteration 2, with gap closed "
         "G = (ScPO_M2 - M0) / (IRPO_Gold_M2 - M0): 'reproduced' if IRPO_Gold improves on M0 by more than 2 standard errors "
         "and G >= 0.5 and ScPO improves on M0 by more than 2 standard errors; 'partial' if IRPO_Gold improves by more than "
         "2 standard errors and either G >= 0.5 without a significant ScPO gain, or 0.25 <= G < 0.5; 'not reproduced' otherwise "
         "(including when gold-label training itself does not improve measurably, which leaves the claim untestable here).")

ARMS = {"scpo": "scpo", "unweighted": "unweighted", "irpo_gold": "gold", "lmsi": "lmsi", "semi": "semi"}


def base_config(args) -> dict:
    "The shared settings of every arm (a `latent_lm.scpo.run` config without run_dir, seed and mode)."
    from scpo_premise import REGIMES
    diff = {k: (list(v) if isinstance(v, tuple) else v) for k, v in REGIMES[args.regime].items()}
    return {
        "rounds": 2,
        "task": {"difficulty": diff, "template": "{question}", "answer_format": "####", "n_train": args.n_train,
                 "n_labeled": args.n_train // 4, "n_test": args.n_test},
        "model": {"init": "tiny", "tokenizer": "task", "d_model": 64, "n_layers": 4, "n_heads": 4, "pretrain_problems": 4000,
                  "pretrain_paths": "all", "pretrain_steps": args.pretrain_steps, "pretrain_lr": 3e-3, "pretrain_batch_size": 32,
                  "target_accuracy": 1.0, "eval_every": args.pretrain_steps, "fine_eval_every": args.pretrain_steps,
                  "fine_eval_from": 1.0, "n_dev": 100},
        "sampling": {"k": 8, "temperature": args.temperature, "top_p": 1.0, "max_new_tokens": args.max_new_tokens, "batch_size": 256},
        "select": {"thresholds": [0.5, 0.7]},
        "train": {"beta": 0.5, "alpha": 1.0, "lr": 1e-4, "epochs": 2, "batch_size": 16, "lr_schedule": "cosine", "checkpoint": False},
        "eval": {"k": args.eval_k, "temperature": args.temperature},
    }


def mean_std(xs):
    xs = [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs: return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def share_round0(src: Path, dst: Path, cfg):
    """Copy round 0's problems, samples and scores (drawn from the shared M0) and M0's evaluation into another arm's run
    folder, opened first with that arm's fingerprint (the record stores' sidecars and done markers travel with them).
    Only for arms whose round-0 problems are the same items (semi marks some of them labeled: it draws its own)."""
    from latent_lm.core import open_run_dir
    with open_run_dir(dst, cfg.fingerprint()):
        for rel in ["round_0/prompts.jsonl", "round_0/generations.jsonl", "round_0/scores.jsonl", "eval/m0.jsonl"]:
            for suffix in ("", ".done", ".store.json"):
                s = src / (rel + suffix)
                if s.exists():
                    (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(s, dst / (rel + suffix))


def past(deadline) -> bool:
    return deadline is not None and datetime.datetime.now(datetime.timezone.utc) >= deadline


def control(run_dir: Path, m0: str, m1: str, cfg) -> dict:
    """Positive control: on round 0's ScPO pairs (the data M1 was trained on), the log-likelihood margin
    log p(chosen) - log p(rejected) under M1 minus the same under M0 (the quantity the DPO loss pushes up), with its paired
    standard error. Also, for the record, how often M0's and M1's greedy answer is the pair's chosen answer."""
    from latent_lm.core import read_jsonl
    from latent_lm.lm import load_lm
    from latent_lm.generate import HFGenerator
    from latent_lm.judge import answer_extractor, answers_equal
    from latent_lm.prefs import precompute_ref_logps
    sel = [r for r in read_jsonl(run_dir / "round_0" / "selected.jsonl") if "chosen" in r]
    ex, hits, margins = answer_extractor(cfg.task.answer_format), {}, {}
    for name, path in (("M0", m0), ("M1", m1)):
        model, tok = load_lm(path)
        rows = precompute_ref_logps(model.eval(), [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in sel], tok,
                                    chat=cfg.model.chat)
        margins[name] = [r["ref_chosen_logps"] - r["ref_rejected_logps"] for r in rows]
        outs = HFGenerator(model, tok, batch_size=256).generate([r["prompt"] for r in sel], n=1, temperature=0,
                                                               max_new_tokens=cfg.sampling.max_new_tokens, chat=cfg.model.chat,
                                                               stop=list(cfg.sampling.stop) or None)
        hits[name] = sum(float(answers_equal(ex(o[0].text), r["chosen_answer"])) for o, r in zip(outs, sel)) / len(sel)
    d = [b - a for a, b in zip(margins["M0"], margins["M1"])]
    n = len(d); md = sum(d) / n
    se = math.sqrt(sum((x - md) ** 2 for x in d) / max(n - 1, 1) / n)
    return {"n_pairs": n, "M0_margin": sum(margins["M0"]) / n, "M1_margin": sum(margins["M1"]) / n, "gain": md, "gain_se": se,
            "M0_greedy_is_chosen": hits["M0"], "M1_greedy_is_chosen": hits["M1"]}


def run_seed(seed: int, args, work: Path, log, on_arm) -> dict:
    from latent_lm.scpo.run import load_config, ScPORun, pretrain_problems
    from latent_lm.tasks import train_seed_model, sft_records, arithmetic_tokenizer
    base = base_config(args)
    sdir = work / f"seed{seed}"
    t0 = time.time()
    task_seed = {"seed": seed}                               # the seed also draws the round and test problems
    if args.init:
        init, info = str(Path(args.init).resolve()), {"steps": None, "dev_accuracy": None, "from": "premise snapshot"}
    else:
        cfg0 = load_config({**base, "seed": seed, "task": {**base["task"], **task_seed}, "run_dir": str(sdir / "scpo")})
        train, dev = pretrain_problems(cfg0)
        info = train_seed_model(cfg0.model, sft_records(train, cfg0.task.template, cfg0.model.pretrain_paths), dev, sdir / "init_model",
                                cfg0.task.template, cfg0.task.answer_format, cfg0.sampling.max_new_tokens, seed=seed,
                                tokenizer=arithmetic_tokenizer())
        init = str(sdir / "init_model")
        log(f"seed {seed}: M0 trained for {info['steps']} steps, dev greedy accuracy {info['dev_accuracy']:.3f} ({time.time() - t0:.0f}s)")
    out, first = {"seed": seed, "init": info, "arms": {}, "timing_s": {"pretrain": time.time() - t0}}, None
    for arm, mode in ARMS.items():
        if past(args.deadline_at):
            log(f"seed {seed}: deadline reached before arm {arm}; stopping"); out["stopped_before"] = arm; break
        t1 = time.time()
        d = {**json.loads(json.dumps(base)), "seed": seed, "run_dir": str(sdir / arm)}
        d["task"].update(task_seed)
        d["model"]["init"] = init
        d["select"]["mode"] = mode
        cfg = load_config(d)
        if first is not None and mode != "semi" and not Path(d["run_dir"]).exists(): share_round0(first, Path(d["run_dir"]), cfg)
        s = ScPORun(cfg).run()
        first = first or Path(d["run_dir"])
        if arm == "scpo":
            out["control"] = control(Path(d["run_dir"]), s["models"][0]["path"], s["models"][1]["path"], cfg)
            m0 = [json.loads(l) for l in (Path(d["run_dir"]) / "eval" / "m0.jsonl").read_text().splitlines()]
            diff = [float(r["sc_correct"]) - float(r["greedy_correct"]) for r in m0]
            md = sum(diff) / len(diff)
            out["m0_sc_gain_se"] = math.sqrt(sum((x - md) ** 2 for x in diff) / max(len(diff) - 1, 1) / len(diff))
        out["arms"][arm] = s
        out["timing_s"][arm] = time.time() - t1
        log(f"seed {seed} {arm}: greedy " + " -> ".join(f"{m['greedy_accuracy']:.3f}" for m in s["models"])
            + ", SC " + " -> ".join(f"{m['sc_accuracy']:.3f}" for m in s["models"]) + f" ({time.time() - t1:.0f}s)")
        on_arm(out)
    return out


def summarise(per_seed: list[dict], n_test: int) -> tuple[dict, str, dict]:
    "Arms over the seeds that finished them; the verdict over the seeds that finished both ScPO and IRPO_Gold."
    arms = {}
    with_scpo = [r for r in per_seed if "scpo" in r["arms"]]
    m0g = [r["arms"]["scpo"]["models"][0]["greedy_accuracy"] for r in with_scpo]
    m0s = [r["arms"]["scpo"]["models"][0]["sc_accuracy"] for r in with_scpo]
    arms["seed_M0"] = {"greedy_accuracy": mean_std(m0g)[0], "greedy_accuracy_std": mean_std(m0g)[1],
                       "sc_accuracy": mean_std(m0s)[0], "sc_accuracy_std": mean_std(m0s)[1], "seeds": [r["seed"] for r in with_scpo]}
    for arm in ARMS:
        done = [r for r in per_seed if arm in r["arms"]]
        if not done: continue
        rec = {"seeds": [r["seed"] for r in done]}
        for it in (1, 2):
            for key, name in (("greedy_accuracy", "greedy"), ("sc_accuracy", "sc")):
                m, s = mean_std([r["arms"][arm]["models"][it][key] for r in done])
                rec[f"{name}_accuracy_M{it}"], rec[f"{name}_accuracy_M{it}_std"] = m, s
        for k in (0, 1):
            for key in ("majority_correct", "pair_accuracy", "weighted_pair_accuracy", "n_selected", "mean_weight", "somers_d"):
                vals = [r["arms"][arm]["rounds"][k].get(key) for r in done]
                if all(v is None for v in vals): continue
                m, s = mean_std(vals)
                rec[f"round{k}_{key}"], rec[f"round{k}_{key}_std"] = m, s
        arms[arm] = rec
    both = [r for r in per_seed if "scpo" in r["arms"] and "irpo_gold" in r["arms"]]
    if not both: return arms, "not reproduced", {"note": "no seed finished both the ScPO and the IRPO_Gold arm"}
    m0 = statistics.fmean(r["arms"]["scpo"]["models"][0]["greedy_accuracy"] for r in both)
    gold = statistics.fmean(r["arms"]["irpo_gold"]["models"][2]["greedy_accuracy"] for r in both)
    scpo = statistics.fmean(r["arms"]["scpo"]["models"][2]["greedy_accuracy"] for r in both)
    # standard error of a difference of two accuracies on the same n_test problems, averaged over seeds (binomial, conservative)
    se = lambda p: math.sqrt(max(p * (1 - p), 1e-9) / n_test / len(both))
    se_gold, se_scpo = math.hypot(se(gold), se(m0)), math.hypot(se(scpo), se(m0))
    gain_gold, gain_scpo = gold - m0, scpo - m0
    G = gain_scpo / gain_gold if gain_gold > 0 else float("nan")
    gold_sig, scpo_sig = gain_gold > 2 * se_gold, gain_scpo > 2 * se_scpo
    if gold_sig and G >= 0.5 and scpo_sig: verdict = "reproduced"
    elif gold_sig and (G >= 0.5 or 0.25 <= G < 0.5): verdict = "partial"
    else: verdict = "not reproduced"
    rule = {"seeds": [r["seed"] for r in both], "M0_greedy": m0, "irpo_gold_M2_greedy": gold, "scpo_M2_greedy": scpo,
            "gain_gold": gain_gold, "gain_scpo": gain_scpo, "se_gain_gold": se_gold, "se_gain_scpo": se_scpo, "gap_closed": G,
            "gold_gain_significant": gold_sig, "scpo_gain_significant": scpo_sig}
    return arms, verdict, rule


PREMISE = ("ScPO relies on the vote carrying signal. The rule of the premise probe (bench/scpo_premise.py), on this benchmark's "
           "own M0 and test problems: M0's greedy accuracy in [0.2, 0.6], SC@k - greedy > 2 standard errors of the paired "
           "difference (pooled over seeds), and Somers' D between the majority's vote share and its correctness on round 0's "
           "training samples >= 0.6 (paper, GSM8K: 0.80).")
POSITIVE_CONTROL = ("Preference training does what it is told: on round 0's ScPO pairs (M1's training data), the log-likelihood "
                    "margin log p(chosen) - log p(rejected) is larger under M1 than under M0 (mean paired gain over seeds > 2 standard "
                    "errors). This must show if the pairs, the weighted DPO + NLL loss and the training loop are right, whether or not "
                    "the chosen answers are correct.")


def premise_numbers(per_seed: list[dict]) -> dict:
    "The premise by the probe's rule, on the benchmark's M0 (per seed and mean)."
    rs = [r for r in per_seed if "scpo" in r["arms"]]
    if not rs: return {"what": PREMISE, "numbers": {}, "holds": None}
    g = [r["arms"]["scpo"]["models"][0]["greedy_accuracy"] for r in rs]
    sc = [r["arms"]["scpo"]["models"][0]["sc_accuracy"] for r in rs]
    D = [r["arms"]["scpo"]["rounds"][0].get("somers_d") for r in rs]
    maj = [r["arms"]["scpo"]["rounds"][0].get("majority_correct") for r in rs]
    ses = [r["m0_sc_gain_se"] for r in rs]
    se = math.sqrt(sum(x * x for x in ses)) / len(ses)
    gain = mean_std(sc)[0] - mean_std(g)[0]
    nums = {"M0_greedy_accuracy": mean_std(g)[0], "M0_sc_accuracy": mean_std(sc)[0], "sc_minus_greedy": gain, "sc_minus_greedy_se": se,
            "round0_majority_correct": mean_std(maj)[0], "round0_somers_d": mean_std(D)[0],
            "per_seed": {"greedy": g, "sc": sc, "somers_d": D, "majority_correct": maj, "sc_gain_se": ses}}
    holds = 0.2 <= nums["M0_greedy_accuracy"] <= 0.6 and gain > 2 * se and (nums["round0_somers_d"] or 0) >= 0.6
    return {"what": PREMISE, "numbers": nums, "holds": bool(holds)}


def premise_probe() -> dict | None:
    "The candidate seed models, tasks and temperatures the premise probe tried (bench/results/scpo_premise.json), as a table."
    f = ROOT / "bench" / "results" / "scpo_premise.json"
    if not f.exists(): return None
    d = json.loads(f.read_text())
    keep = ("greedy", "sc8", "sc_gain", "somers_d")
    return {"source": "bench/results/scpo_premise.json", "command": d["command"], "picked": d.get("picked"), "rule": d["premise"]["what"],
            "table": {k: {x: v.get(x) for x in keep} for k, v in d["arms"].items()}}


def control_numbers(per_seed: list[dict]) -> dict:
    cs = [r["control"] for r in per_seed if "control" in r]
    if not cs: return {"what": POSITIVE_CONTROL, "numbers": {}, "shows": None}
    gain = statistics.fmean(c["gain"] for c in cs)
    se = math.sqrt(sum(c["gain_se"] ** 2 for c in cs)) / len(cs)
    return {"what": POSITIVE_CONTROL, "numbers": {"gain": gain, "gain_se": se, "per_seed": cs}, "shows": bool(gain > 2 * se)}


def md_text(res: dict, name: str = "scpo") -> str:
    "The results as markdown (the table, the verdict inputs, premise, control and notes)."
    a, v = res["arms"], res["setup"]["verdict_inputs"]
    f = lambda x: "-" if x is None else f"{x:.3f}"
    fs = lambda m, s: "-" if m is None else (f"{m:.3f}" if not s else f"{m:.3f} ± {s:.3f}")
    k = res["setup"]["config"]["eval"]["k"]
    lines = [f"# ScPO benchmark ({res['setup']['mode']})", "", f"**Claim.** {res['claim']}", "", f"**Verdict: {res['verdict']}.**", "",
             f"Command: `{res['command']}`", "",
             f"| arm | seeds | greedy M0 | greedy M1 | greedy M2 | SC@{k} M0 | SC@{k} M1 | SC@{k} M2 | majority right (round 0 / 1) | chosen answer right (round 0 / 1) | pairs (round 0 / 1) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    m0 = a["seed_M0"]
    for arm in ARMS:
        if arm not in a: lines.append(f"| {arm} | not run | | | | | | | | | |"); continue
        r = a[arm]
        lines.append(f"| {arm} | {r['seeds']} | {fs(m0['greedy_accuracy'], m0['greedy_accuracy_std'])} | {fs(r['greedy_accuracy_M1'], r['greedy_accuracy_M1_std'])} | "
                     f"{fs(r['greedy_accuracy_M2'], r['greedy_accuracy_M2_std'])} | {fs(m0['sc_accuracy'], m0['sc_accuracy_std'])} | "
                     f"{fs(r['sc_accuracy_M1'], r['sc_accuracy_M1_std'])} | {fs(r['sc_accuracy_M2'], r['sc_accuracy_M2_std'])} | "
                     f"{f(r.get('round0_majority_correct'))} / {f(r.get('round1_majority_correct'))} | "
                     f"{f(r.get('round0_pair_accuracy'))} / {f(r.get('round1_pair_accuracy'))} | "
                     f"{f(r.get('round0_n_selected'))} / {f(r.get('round1_n_selected'))} |")
    if "gap_closed" in v:
        lines += ["", f"Gap closed G = ({f(v['scpo_M2_greedy'])} - {f(v['M0_greedy'])}) / ({f(v['irpo_gold_M2_greedy'])} - {f(v['M0_greedy'])}) = "
                  f"{v['gap_closed']:.2f}; gain of IRPO_Gold {v['gain_gold']:+.3f} (2 SE = {2 * v['se_gain_gold']:.3f}), gain of ScPO "
                  f"{v['gain_scpo']:+.3f} (2 SE = {2 * v['se_gain_scpo']:.3f}); seeds {v['seeds']}."]
    pr, pc = res["premise"], res["positive_control"]
    if pr["numbers"]:
        n = pr["numbers"]
        lines += ["", f"**Premise** ({'holds' if pr['holds'] else 'does not hold'}): {pr['what']} M0: greedy {n['M0_greedy_accuracy']:.3f}, "
                  f"SC@{k} {n['M0_sc_accuracy']:.3f} (gain {n['sc_minus_greedy']:+.3f} ± {n['sc_minus_greedy_se']:.3f}); Somers' D "
                  f"{n['round0_somers_d']:.2f}; round-0 majority right {n['round0_majority_correct']:.3f}."]
    if pc["numbers"]:
        n = pc["numbers"]
        lines += ["", f"**Positive control** ({'shows' if pc['shows'] else 'does not show'}): {pc['what']} Margin gain {n['gain']:+.2f} ± {n['gain_se']:.2f} nats; "
                  "per seed, margin M0 -> M1: " + ", ".join(f"{c['M0_margin']:.2f} -> {c['M1_margin']:.2f} (n={c['n_pairs']})" for c in n["per_seed"])
                  + "; greedy answer = chosen answer, M0 -> M1: " + ", ".join(f"{c['M0_greedy_is_chosen']:.3f} -> {c['M1_greedy_is_chosen']:.3f}" for c in n["per_seed"]) + "."]
    lines += ["", f"Mean ± std over seeds; SC@{k} = majority answer of {k} samples at temperature {res['setup']['config']['eval']['temperature']}. "
              f"\"majority right\" = how often the majority answer of the k=8 training samples is the gold answer. \"chosen answer right\" = "
              "fraction of selected pairs (or LMSI targets) whose chosen answer is correct.", "", f"**Notes.** {res['notes']}", "",
              f"![accuracy by round]({name}.png)", "", f"![votes]({name}_votes.png)", ""]
    pp = res.get("premise_probe")
    if pp:
        lines += ["## How the seed model was chosen (bench/results/scpo_premise.json)", "", f"Rule: {pp['rule']}", "",
                  f"Picked: {pp['picked'] and {k: pp['picked'][k] for k in ('regime', 'pretrain_steps', 'temperature', 'greedy', 'sc8', 'somers_d') if k in pp['picked']}}", "",
                  "| candidate (regime, model, SFT steps, problem steps, T) | greedy | SC@8 | SC - greedy | Somers' D |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {f(v['greedy'])} | {f(v['sc8'])} | {f(v['sc_gain'])} | {f(v['somers_d'])} |" for k, v in pp["table"].items()]
        lines += ["", f"Commands that produced the table, in order: `{pp['command']}`", ""]
    return "\n".join(lines)


def plot(res: dict, per_seed: list[dict], out: Path, name: str = "scpo"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a = res["arms"]
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (key, title) in zip(axs, (("greedy", "greedy accuracy"), ("sc", f"self-consistency@{res['setup']['config']['eval']['k']} accuracy"))):
        for i, arm in enumerate(ARMS):
            if arm not in a: continue
            ys = [a["seed_M0"][f"{key}_accuracy"], a[arm][f"{key}_accuracy_M1"], a[arm][f"{key}_accuracy_M2"]]
            es = [a["seed_M0"][f"{key}_accuracy_std"], a[arm][f"{key}_accuracy_M1_std"], a[arm][f"{key}_accuracy_M2_std"]]
            ax.errorbar([0, 1, 2], ys, yerr=es, marker="o", capsize=3, color=f"C{i}", label=arm)
        ax.set_xticks([0, 1, 2], ["M0", "M1", "M2"]); ax.set_title(f"test {title}"); ax.grid(alpha=.3)
    axs[0].legend(fontsize=8); fig.tight_layout(); fig.savefig(out / f"{name}.png", dpi=110); plt.close(fig)
    from latent_lm.scpo.app import plot_votes, plot_accuracy_vs_votes
    run_dir = Path(per_seed[0]["arms"]["scpo"]["run_dir"])
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.4))
    plot_votes(run_dir, axs[0]); plot_accuracy_vs_votes(run_dir, axs[1]); axs[0].set_title(f"ScPO arm, seed {per_seed[0]['seed']}: vote distribution")
    fig.tight_layout(); fig.savefig(out / f"{name}_votes.png", dpi=110); plt.close(fig)


def main(argv=None) -> int:
    from scpo_premise import REGIMES
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller rounds and test sets (see the defaults below)")
    ap.add_argument("--seeds", type=int, nargs="*", help="seeds (default: 0 1 2)")
    ap.add_argument("--regime", default="small_1-5", choices=sorted(REGIMES), help="task difficulty (bench/scpo_premise.py REGIMES)")
    ap.add_argument("--init", default=None, help="seed model folder (the premise probe's picked snapshot); default: train one per seed")
    ap.add_argument("--init-regime", default=None, choices=sorted(REGIMES),
                    help="the regime --init was trained on (scpo_premise.py: 4000 problems, seed 1000): test problems seen in its training are counted")
    ap.add_argument("--pretrain-steps", type=int, default=2000, help="seed-model training steps when --init is not given")
    ap.add_argument("--temperature", type=float, default=0.7, help="sampling and SC temperature (the premise probe's picked one)")
    ap.add_argument("--n-train", type=int, default=None, help="fresh problems per round (default 128 quick, 512 full)")
    ap.add_argument("--n-test", type=int, default=None, help="test problems per seed (default 200 quick, 600 full; over 3 seeds one SE of a mean accuracy near 0.5 is 0.02 at 200, 0.012 at 600)")
    ap.add_argument("--eval-k", type=int, default=None, help="samples per test problem for SC@k (default 4 quick, 8 full)")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--deadline", default=None, help="UTC HH:MM: start no arm after it; results cover what finished")
    ap.add_argument("--note", default="", help="text appended to the results' notes (e.g. how the work folder was produced)")
    ap.add_argument("--tag", default="", help="results go to bench/results/scpo[_TAG].*")
    ap.add_argument("--work-dir", default=str(ROOT / "runs" / "bench_scpo"), help="where the runs go (resumable; delete to start over)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    args.n_train = args.n_train or (128 if args.quick else 512)
    args.n_test = args.n_test or (200 if args.quick else 600)
    args.eval_k = args.eval_k or (4 if args.quick else 8)
    args.deadline_at = None
    if args.deadline:
        hh, mm = map(int, args.deadline.split(":"))
        now = datetime.datetime.now(datetime.timezone.utc)
        args.deadline_at = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    torch.set_num_threads(1)
    seeds = args.seeds if args.seeds else [0, 1, 2]
    work, out = Path(args.work_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log = lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", flush=True)
    base = base_config(args)
    run_key = f"{'quick' if args.quick else 'full'}_{args.regime}_" + (f"init-{Path(args.init).parent.name}-{Path(args.init).name}" if args.init else f"pre{args.pretrain_steps}")
    command = ("nice -n 10 python bench/scpo.py" + (" --quick" if args.quick else "") + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds else "")
               + f" --regime {args.regime}" + (f" --init {args.init}" if args.init else f" --pretrain-steps {args.pretrain_steps}")
               + (f" --init-regime {args.init_regime}" if args.init_regime else "")
               + f" --temperature {args.temperature:g} --n-train {args.n_train} --n-test {args.n_test} --eval-k {args.eval_k}"
               + f" --max-new-tokens {args.max_new_tokens}" + (f" --deadline {args.deadline}" if args.deadline else "") + (f" --tag {args.tag}" if args.tag else "") + (f" --note {shlex.quote(args.note)}" if args.note else ""))
    name = "scpo" + (f"_{args.tag}" if args.tag else "")
    per_seed: list[dict] = []

    def write(partial: bool):
        arms, verdict, rule = summarise(per_seed, args.n_test)
        if "seed_M0" not in arms or arms["seed_M0"]["greedy_accuracy"] is None: return
        finished = {r["seed"]: sorted(r["arms"]) for r in per_seed}
        notes = (f"Task: {base['task']['difficulty']}; M0: " + (f"the premise probe's snapshot {args.init} (one M0 for every seed; each seed draws its own round and test problems, samples and training order)"
                 if args.init else f"a {base['model']['n_layers']}-layer d={base['model']['d_model']} model per seed trained {args.pretrain_steps} steps on every derivation of 4000 problems")
                 + f". Each iteration uses {args.n_train} fresh problems, k=8 samples at T={args.temperature:g}, tau = 0.5k then 0.7k, beta=0.5, alpha=1, "
                 f"{base['train']['epochs']} epochs at lr {base['train']['lr']}; semi keeps the gold answer of {base['task']['n_labeled']} problems per round. "
                 f"Test sets have {args.n_test} problems per seed, so one standard error of an accuracy near 50% is about {math.sqrt(0.25 / args.n_test):.3f} per seed "
                 f"and {math.sqrt(0.25 / args.n_test / max(1, len(per_seed))):.3f} over the {len(per_seed)} seed(s) run. "
                 f"Finished arms per seed: {finished}." + (f" Test problems that also occur in the seed model's training set (regime {args.init_regime}), per seed: {overlap} of {args.n_test}." if overlap is not None else "") + (" PARTIAL: the run was stopped by its deadline (or is still running); arms and seeds not listed were not run, "
                 "and the verdict uses only the seeds that finished both ScPO and IRPO_Gold." if partial else "")
                 + " The paper's models (Llama-3 8B) and data (GSM8K, 7.5K problems, 10 epochs) are far larger; this measures whether the mechanism "
                 "works on a task where correctness is exact, not the paper's numbers." + (" " + args.note if args.note else ""))
        res = {"claim": CLAIM, "command": command,
               "setup": {"mode": "quick" if args.quick else "full", "seeds": seeds, "regime": args.regime, "init": args.init and Path(args.init).name,
                         "config": base, "verdict_inputs": rule, "finished": finished, "partial": partial,
                         "seed_models": [{k: v for k, v in r["init"].items() if k != "history"} for r in per_seed],
                         "timing_s": [r["timing_s"] for r in per_seed], "total_s": time.time() - t0,
                         "timing_note": "seconds spent by this invocation; stages resumed from the work dir are not re-timed",
                         "machine": machine_info()},
               "arms": arms, "verdict": verdict, "premise": premise_numbers(per_seed), "positive_control": control_numbers(per_seed),
               "notes": notes, "premise_probe": premise_probe()}
        write_results(name, res, md_text(res, name), out)
        if any("scpo" in r["arms"] for r in per_seed): plot(res, [r for r in per_seed if "scpo" in r["arms"]], out, name)

    overlap = None
    if args.init and args.init_regime:          # test problems that the seed model saw in training (counted, not removed)
        from latent_lm.tasks import arithmetic_problems
        from latent_lm.scpo.run import load_config, test_problems
        seen = {p["question"] for p in arithmetic_problems(4000, seed=1000, **REGIMES[args.init_regime])}
        overlap = {s: sum(p["question"] in seen for p in test_problems(load_config({**base, "seed": s, "task": {**base["task"], "seed": s}})))
                   for s in seeds}
        log(f"test problems seen in the seed model's training, per seed: {overlap}")
    for s in seeds:
        if past(args.deadline_at): log(f"deadline reached before seed {s}"); break
        rec = {"seed": s, "arms": {}}
        per_seed.append(rec)
        def on_arm(r, rec=rec):
            rec.update(r); write(partial=True)
        rec.update(run_seed(s, args, work / run_key, log, on_arm))
    complete = len(per_seed) == len(seeds) and all(len(r["arms"]) == len(ARMS) for r in per_seed)
    write(partial=not complete)
    log(f"wrote {out / name}.json ({'complete' if complete else 'partial'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
