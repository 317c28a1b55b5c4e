"""Benchmark: does ScPO (training on the model's own majority votes, no labels) close most of the gap to training with
gold answers?

Setup (the honest tiny version of the paper's GSM8K experiment, spec section B.6):

* Task: generated arithmetic word problems with exact integer answers (`latent_lm.tasks.arithmetic_problems`).
* Seed model M0: a small Llama-style model trained from scratch on worked solutions, stopped as soon as its greedy
  accuracy on a dev set reaches the target (so that it starts in the paper's 30-60% regime by construction). The same
  M0 starts every arm of a seed.
* Arms, each two iterations (M1 from M0's samples, M2 from M1's), on the same fresh unlabeled problems per iteration:
    scpo        weighted DPO + NLL on most- vs least-voted responses, weight = vote margin / k (the method)
    unweighted  the same pairs, weight 1 (the paper's Table 4 ablation)
    irpo_gold   IRPO with gold answers: a correct vs an incorrect response, weight 1 (the upper reference)
    lmsi        SFT on the majority response (LMSI)
  Round 0's samples come from M0 for every arm, so they are drawn once and shared.
* Metrics on held-out problems: greedy accuracy and self-consistency over 8 samples (SC@8) of M0, M1, M2; per round,
  how often the majority answer is right and how often a selected pair's chosen answer is right.

Run: nice python bench/scpo.py --quick   (writes bench/results/scpo.json, scpo.md, scpo.png, scpo_votes.png)
     nice python bench/scpo.py --quick --target-accuracy 0.3 --tag weak_m0   (a weaker seed model: scpo_weak_m0.*)
"""
from __future__ import annotations
import argparse, json, math, shutil, statistics, sys, time
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

ARMS = {"scpo": "scpo", "unweighted": "unweighted", "irpo_gold": "gold", "lmsi": "lmsi"}


def base_config(quick: bool, target: float = 0.4) -> dict:
    "The shared settings of every arm (a `latent_lm.scpo.run` config without run_dir and mode)."
    return {
        "rounds": 2,
        "task": {"difficulty": {"n_steps": 3, "ops": "+-", "max_start": 15, "max_operand": 9}, "template": "{question}",
                 "answer_format": "####", "n_train": 1024, "n_test": 200 if quick else 500},
        "model": {"init": "tiny", "tokenizer": "task", "d_model": 64, "n_layers": 4, "n_heads": 4, "pretrain_problems": 4000,
                  "pretrain_paths": "all", "pretrain_steps": 2500, "pretrain_lr": 3e-3, "pretrain_batch_size": 32,
                  "target_accuracy": target, "eval_every": 25, "fine_eval_every": 5, "n_dev": 200},
        "sampling": {"k": 8, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 48, "batch_size": 256},
        "select": {"thresholds": [0.5, 0.7]},
        "train": {"beta": 0.5, "alpha": 1.0, "lr": 1e-4, "epochs": 2, "batch_size": 16, "lr_schedule": "cosine", "checkpoint": False},
        "eval": {"k": 8, "temperature": 0.7},
    }


def mean_std(xs):
    xs = [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs: return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def share_round0(src: Path, dst: Path, cfg):
    """Copy round 0's problems, samples and scores (drawn from the shared M0) and M0's evaluation into another arm's run
    folder, opened first with that arm's fingerprint (the record stores' sidecars and done markers travel with them)."""
    from latent_lm.core import open_run_dir
    with open_run_dir(dst, cfg.fingerprint()):
        for rel in ["round_0/prompts.jsonl", "round_0/generations.jsonl", "round_0/scores.jsonl", "eval/m0.jsonl"]:
            for suffix in ("", ".done", ".store.json"):
                s = src / (rel + suffix)
                if s.exists():
                    (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(s, dst / (rel + suffix))


def run_seed(seed: int, quick: bool, target: float, work: Path, log) -> dict:
    from latent_lm.scpo.run import load_config, ScPORun, pretrain_problems
    from latent_lm.tasks import train_seed_model, sft_records, arithmetic_tokenizer
    base = base_config(quick, target)
    sdir = work / f"seed{seed}"
    t0 = time.time()
    cfg0 = load_config({**base, "seed": seed, "run_dir": str(sdir / "scpo")})
    train, dev = pretrain_problems(cfg0)
    info = train_seed_model(cfg0.model, sft_records(train, cfg0.task.template, cfg0.model.pretrain_paths), dev, sdir / "init_model",
                            cfg0.task.template, cfg0.task.answer_format, cfg0.sampling.max_new_tokens, seed=seed, tokenizer=arithmetic_tokenizer())
    log(f"seed {seed}: M0 trained for {info['steps']} steps, dev greedy accuracy {info['dev_accuracy']:.3f} ({time.time() - t0:.0f}s)")
    out, first = {"init": info, "arms": {}, "timing_s": {"pretrain": time.time() - t0}}, None
    for arm, mode in ARMS.items():
        t1 = time.time()
        d = {**json.loads(json.dumps(base)), "seed": seed, "run_dir": str(sdir / arm)}
        d["model"]["init"] = str(sdir / "init_model")
        d["select"]["mode"] = mode
        cfg = load_config(d)
        if first is not None and not Path(d["run_dir"]).exists(): share_round0(first, Path(d["run_dir"]), cfg)
        s = ScPORun(cfg).run()
        first = first or Path(d["run_dir"])
        out["arms"][arm] = s
        out["timing_s"][arm] = time.time() - t1
        log(f"seed {seed} {arm}: greedy " + " -> ".join(f"{m['greedy_accuracy']:.3f}" for m in s["models"])
            + ", SC@8 " + " -> ".join(f"{m['sc_accuracy']:.3f}" for m in s["models"]) + f" ({time.time() - t1:.0f}s)")
    return out


def summarise(per_seed: list[dict], seeds: list[int], n_test: int) -> tuple[dict, str, dict]:
    arms = {}
    m0g = [r["arms"]["scpo"]["models"][0]["greedy_accuracy"] for r in per_seed]
    m0s = [r["arms"]["scpo"]["models"][0]["sc_accuracy"] for r in per_seed]
    arms["seed_M0"] = {"greedy_accuracy": mean_std(m0g)[0], "greedy_accuracy_std": mean_std(m0g)[1],
                       "sc8_accuracy": mean_std(m0s)[0], "sc8_accuracy_std": mean_std(m0s)[1], "seeds": seeds}
    for arm in ARMS:
        rec = {"seeds": seeds}
        for it in (1, 2):
            for key, name in (("greedy_accuracy", "greedy"), ("sc_accuracy", "sc8")):
                m, s = mean_std([r["arms"][arm]["models"][it][key] for r in per_seed])
                rec[f"{name}_accuracy_M{it}"], rec[f"{name}_accuracy_M{it}_std"] = m, s
        for k in (0, 1):
            for key in ("majority_correct", "pair_accuracy", "weighted_pair_accuracy", "n_selected", "mean_weight", "somers_d"):
                vals = [r["arms"][arm]["rounds"][k].get(key) for r in per_seed]
                if all(v is None for v in vals): continue
                m, s = mean_std(vals)
                rec[f"round{k}_{key}"], rec[f"round{k}_{key}_std"] = m, s
        arms[arm] = rec
    # verdict
    m0 = arms["seed_M0"]["greedy_accuracy"]
    gold, scpo = arms["irpo_gold"]["greedy_accuracy_M2"], arms["scpo"]["greedy_accuracy_M2"]
    # standard error of a difference of two accuracies on the same n_test problems, averaged over seeds (binomial, conservative)
    se = lambda p: math.sqrt(max(p * (1 - p), 1e-9) / n_test / len(seeds))
    se_gold, se_scpo = math.hypot(se(gold), se(m0)), math.hypot(se(scpo), se(m0))
    gain_gold, gain_scpo = gold - m0, scpo - m0
    G = gain_scpo / gain_gold if gain_gold > 0 else float("nan")
    gold_sig, scpo_sig = gain_gold > 2 * se_gold, gain_scpo > 2 * se_scpo
    if gold_sig and G >= 0.5 and scpo_sig: verdict = "reproduced"
    elif gold_sig and (G >= 0.5 or 0.25 <= G < 0.5): verdict = "partial"
    else: verdict = "not reproduced"
    rule = {"M0_greedy": m0, "irpo_gold_M2_greedy": gold, "scpo_M2_greedy": scpo, "gain_gold": gain_gold, "gain_scpo": gain_scpo,
            "se_gain_gold": se_gold, "se_gain_scpo": se_scpo, "gap_closed": G, "gold_gain_significant": gold_sig,
            "scpo_gain_significant": scpo_sig}
    return arms, verdict, rule


PREMISE = ("ScPO relies on the vote carrying signal: the seed model's majority answer over 8 samples (SC@8) is right more often "
           "than its greedy answer on the same test problems, and the vote share of the majority answer predicts whether it is "
           "right (Somers' D between vote share and correctness on round 0's training samples). Holds if mean SC@8 - greedy > 0 "
           "and mean Somers' D > 0.2 (paper, GSM8K: 0.80).")
POSITIVE_CONTROL = ("A regime where training on the vote must improve greedy accuracy if the code is right (not built yet; "
                    "issue 20).")


def premise_numbers(per_seed: list[dict]) -> dict:
    "The premise (majority right vs greedy right; Somers' D of vote share vs correctness), per seed and mean, with its rule."
    g = [r["arms"]["scpo"]["models"][0]["greedy_accuracy"] for r in per_seed]
    sc = [r["arms"]["scpo"]["models"][0]["sc_accuracy"] for r in per_seed]
    D = [r["arms"]["scpo"]["rounds"][0].get("somers_d") for r in per_seed]
    maj = [r["arms"]["scpo"]["rounds"][0].get("majority_correct") for r in per_seed]
    nums = {"M0_greedy_accuracy": mean_std(g)[0], "M0_sc8_accuracy": mean_std(sc)[0], "sc8_minus_greedy": mean_std(sc)[0] - mean_std(g)[0],
            "round0_majority_correct": mean_std(maj)[0], "round0_somers_d": mean_std(D)[0],
            "per_seed": {"greedy": g, "sc8": sc, "somers_d": D, "majority_correct": maj}}
    holds = nums["sc8_minus_greedy"] > 0 and (nums["round0_somers_d"] or 0) > 0.2
    return {"what": PREMISE, "numbers": nums, "holds": bool(holds)}


def md_text(res: dict, name: str = "scpo") -> str:
    "The results as markdown (the table, the verdict inputs, premise and notes)."
    import tempfile
    p = Path(tempfile.mkdtemp()) / "x.md"
    write_md(res, p, name)
    pr = res["premise"]
    extra = (f"\n**Premise** ({'holds' if pr['holds'] else 'does not hold'}): {pr['what']} Seed model: greedy "
             f"{pr['numbers']['M0_greedy_accuracy']:.3f}, SC@8 {pr['numbers']['M0_sc8_accuracy']:.3f}; Somers' D "
             f"{pr['numbers']['round0_somers_d']:.2f}.\n\n**Positive control:** not measured yet ({res['positive_control']['what']})\n")
    return p.read_text() + extra


def write_md(res: dict, path: Path, name: str = "scpo"):
    a = res["arms"]
    f = lambda x: "-" if x is None else f"{x:.3f}"
    fs = lambda m, s: "-" if m is None else (f"{m:.3f}" if not s else f"{m:.3f} ± {s:.3f}")
    lines = [f"# ScPO benchmark ({res['setup']['mode']})", "", f"**Claim.** {res['claim']}", "", f"**Verdict: {res['verdict']}.**", "",
             f"Command: `{res['command']}`", "",
             "| arm | greedy M0 | greedy M1 | greedy M2 | SC@8 M0 | SC@8 M1 | SC@8 M2 | majority right (round 0 / 1) | chosen answer right (round 0 / 1) | pairs (round 0 / 1) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    m0 = a["seed_M0"]
    for arm in ARMS:
        r = a[arm]
        lines.append(f"| {arm} | {fs(m0['greedy_accuracy'], m0['greedy_accuracy_std'])} | {fs(r['greedy_accuracy_M1'], r['greedy_accuracy_M1_std'])} | "
                     f"{fs(r['greedy_accuracy_M2'], r['greedy_accuracy_M2_std'])} | {fs(m0['sc8_accuracy'], m0['sc8_accuracy_std'])} | "
                     f"{fs(r['sc8_accuracy_M1'], r['sc8_accuracy_M1_std'])} | {fs(r['sc8_accuracy_M2'], r['sc8_accuracy_M2_std'])} | "
                     f"{f(r.get('round0_majority_correct'))} / {f(r.get('round1_majority_correct'))} | "
                     f"{f(r.get('round0_pair_accuracy'))} / {f(r.get('round1_pair_accuracy'))} | "
                     f"{f(r.get('round0_n_selected'))} / {f(r.get('round1_n_selected'))} |")
    v = res["setup"]["verdict_inputs"]
    lines += ["", f"Gap closed G = ({f(v['scpo_M2_greedy'])} - {f(v['M0_greedy'])}) / ({f(v['irpo_gold_M2_greedy'])} - {f(v['M0_greedy'])}) = "
              f"{v['gap_closed']:.2f}; gain of IRPO_Gold {v['gain_gold']:+.3f} (2 SE = {2 * v['se_gain_gold']:.3f}), gain of ScPO "
              f"{v['gain_scpo']:+.3f} (2 SE = {2 * v['se_gain_scpo']:.3f}).", "", "Mean ± std over seeds; SC@8 = majority answer of 8 samples at "
              "temperature 0.7. \"majority right\" = how often the majority answer of the k=8 training samples is the gold answer "
              "(all arms see the same round-0 samples). \"chosen answer right\" = fraction of selected pairs (or LMSI targets) whose "
              "chosen answer is correct.", "", f"**Notes.** {res['notes']}", "", f"![accuracy by round]({name}.png)", "",
              f"![votes]({name}_votes.png)", ""]
    path.write_text("\n".join(lines))


def plot(res: dict, per_seed: list[dict], out: Path, name: str = "scpo"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a = res["arms"]
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (key, title) in zip(axs, (("greedy", "greedy accuracy"), ("sc8", "self-consistency@8 accuracy"))):
        for i, arm in enumerate(ARMS):
            ys = [a["seed_M0"][f"{key}_accuracy"], a[arm][f"{key}_accuracy_M1"], a[arm][f"{key}_accuracy_M2"]]
            es = [a["seed_M0"][f"{key}_accuracy_std"], a[arm][f"{key}_accuracy_M1_std"], a[arm][f"{key}_accuracy_M2_std"]]
            ax.errorbar([0, 1, 2], ys, yerr=es, marker="o", capsize=3, color=f"C{i}", label=arm)
        ax.set_xticks([0, 1, 2], ["M0", "M1", "M2"]); ax.set_title(f"test {title}"); ax.grid(alpha=.3)
    axs[0].legend(fontsize=8); fig.tight_layout(); fig.savefig(out / f"{name}.png", dpi=110); plt.close(fig)
    from latent_lm.scpo.app import plot_votes, plot_accuracy_vs_votes
    run_dir = Path(per_seed[0]["arms"]["scpo"]["run_dir"])
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.4))
    plot_votes(run_dir, axs[0]); plot_accuracy_vs_votes(run_dir, axs[1]); axs[0].set_title("ScPO arm, seed 0: vote distribution")
    fig.tight_layout(); fig.savefig(out / f"{name}_votes.png", dpi=110); plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two seeds, 200 test problems (15-25 min on 2 shared cores)")
    ap.add_argument("--seeds", type=int, nargs="*", help="seeds (default: 0 1 with --quick, else 0 1 2 3 4)")
    ap.add_argument("--target-accuracy", type=float, default=0.4,
                    help="greedy dev accuracy at which the seed model's training stops (default 0.4: the paper's Llama-3 8B starts at 41%% on GSM8K)")
    ap.add_argument("--tag", default="", help="results go to bench/results/scpo[_TAG].*")
    ap.add_argument("--work-dir", default=str(ROOT / "runs" / "bench_scpo"), help="where the runs go (resumable; delete to start over)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = args.seeds if args.seeds else ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    work, out = Path(args.work_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log = lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", flush=True)
    target = args.target_accuracy
    per_seed = [run_seed(s, args.quick, target, work / f"{'quick' if args.quick else 'full'}_t{target:g}", log) for s in seeds]
    base = base_config(args.quick, target)
    arms, verdict, rule = summarise(per_seed, seeds, base["task"]["n_test"])
    command = ("nice python bench/scpo.py" + (" --quick" if args.quick else "") + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds else "")
               + (f" --target-accuracy {target:g}" if target != 0.4 else "") + (f" --tag {args.tag}" if args.tag else ""))
    name = "scpo" + (f"_{args.tag}" if args.tag else "")
    s0, g0, l0 = arms["scpo"], arms["irpo_gold"], arms["lmsi"]
    notes = (f"M0 is a {base['model']['n_layers']}-layer d={base['model']['d_model']} model trained from scratch on worked solutions of "
             f"{base['task']['difficulty']['n_steps']}-step problems (start up to {base['task']['difficulty']['max_start']}, operands up to "
             f"{base['task']['difficulty']['max_operand']}, ops {base['task']['difficulty']['ops']!r}) until its dev greedy accuracy reached {base['model']['target_accuracy']:.0%} "
             f"(steps: {[r['init']['steps'] for r in per_seed]}), on every ordering of each solution's steps (so that samples take different "
             f"paths). Each iteration uses {base['task']['n_train']} fresh problems, k=8 samples at "
             f"T={base['sampling']['temperature']}, tau = 0.5k then 0.7k, beta=0.5, alpha=1, {base['train']['epochs']} epochs at lr {base['train']['lr']}. "
             f"On the round-0 samples the majority answer was right for {s0.get('round0_majority_correct', float('nan')):.0%} of the problems "
             f"and the chosen answer of ScPO's pairs for {s0.get('round0_pair_accuracy', float('nan')):.0%} of its pairs "
             f"(IRPO_Gold: 100% by construction); Somers' D between vote share and majority correctness "
             f"{s0.get('round0_somers_d', float('nan')):.2f} (paper, GSM8K: 0.80). "
             f"Test sets have {base['task']['n_test']} problems, so one standard error of an accuracy near 50% is about "
             f"{math.sqrt(0.25 / base['task']['n_test']):.3f}; differences between arms smaller than ~0.05 are within noise at this size. "
             "The paper's models (Llama-3 8B) and data (GSM8K, 7.5K problems, 10 epochs) are far larger; this measures whether the "
             "mechanism works on a task where correctness is exact, not the paper's numbers.")
    premise = premise_numbers(per_seed)
    res = {"claim": CLAIM, "command": command,
           "setup": {"mode": "quick" if args.quick else "full", "seeds": seeds, "config": base, "verdict_inputs": rule,
                     "init": [{k: v for k, v in r["init"].items() if k != "history"} for r in per_seed],
                     "init_history": [r["init"].get("history") for r in per_seed],
                     "timing_s": [r["timing_s"] for r in per_seed], "total_s": time.time() - t0,
                     "timing_note": "seconds spent by this invocation; stages resumed from the work dir are not re-timed",
                     "machine": machine_info()},
           "arms": arms, "verdict": verdict, "premise": premise,
           "positive_control": {"what": POSITIVE_CONTROL, "numbers": {}, "shows": None},
           "notes": notes + " Positive control not built yet (issue 20 builds it: a regime where training on the vote must help)."}
    write_results(name, res, md_text(res, name), out)
    plot(res, per_seed, out, name)
    log(f"verdict: {verdict}; wrote {out / name}.json, .md, .png, _votes.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
