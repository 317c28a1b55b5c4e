"""Back-and-forth translation (arXiv 2408.04614), the paper's curation ablation at laptop scale: {raw, filtered, rewritten,
filtered_rewritten} at equal training size, each the same base fine-tuned on seed + that arm's synthetic pairs.

    python bench/backtranslate.py --quick        # <= ~15 min on 2 loaded CPU cores

Setting: generated web pages about fictional people and cities (facts wrapped in breadcrumbs and share buttons) plus
boilerplate-only noise pages; seed pairs about other fictional entities in one assistant style; a tiny Llama trained
from scratch as the base; the backward model writes instructions, the forward model's likelihood (the small-scale stand-in for the 1-5 rating) keeps the top
half, the rewriter is the deterministic STAND-IN (not an LLM). Measures on held-out questions about the corpus
entities: QA accuracy (gold value in the answer), share of answers in the assistant format, and a rule judge's win rate
against the raw arm. Premise: the pool holds bad pairs the filter can see (noise pages; wrong instructions).
Positive control: with right instructions for the fact pages (an oracle backward model), the same likelihood filter must
raise QA accuracy over raw pairs at the same size.
Optionally (--smollm2 N) SmolLM2-135M-Instruct rewrites N filtered pairs with the paper's prompt, to show what a real
(small) instruction model does with it."""
from __future__ import annotations
import argparse, json, shutil, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, RESULTS, bench_env, machine_info, arm_stats, write_results
bench_env()

from latent_lm.core import stable_hash
from latent_lm.backtranslate.data import WEB_TAG, answer_correct, has_boilerplate, entity_questions, is_assistant_style
from latent_lm.backtranslate.curate import (ARMS, STANDIN, sft_dataset, answer_questions, qa_metrics, rule_judge, win_rate,
                                            rewrite_pairs, plot_funnel, likelihood_scores, select_pairs, arm_pairs)
from latent_lm.backtranslate.app import BTRun, load_config, save_figures
from latent_lm.backtranslate.data import train_sft

CLAIM = ("Filtering plus rewriting beats the other arms: fine-tuned on seed + the same number of filtered and rewritten "
         "backtranslated pairs, the model answers held-out questions about the corpus better than with raw, filtered-only or "
         "rewritten-only pairs. Verdict rule (fixed before the run): 'reproduced' if filtered_rewritten has the highest mean "
         "rule-judge win rate against raw AND the highest mean QA accuracy of the four arms (strictly above every other arm; a tie is not a win); 'partial' "
         "if it is highest on one of the two; 'not reproduced' otherwise.")

QUICK = {"source": {"n_people": 12, "n_noise": 24, "n_long": 1, "n_seed_people": 6},
         "model": {"d_model": 64, "n_layers": 2, "n_heads": 4, "vocab_size": 512, "max_len": 256},
         "train": {"lr": 4e-3, "epochs": 30, "batch_size": 8, "warmup_steps": 10, "lr_schedule": "cosine", "checkpoint": False},
         "backward": {"max_new_tokens": 20, "batch_size": 32},
         "filter": {"method": "likelihood", "keep_fraction": 0.5},
         "rewrite": {"rewriter": "standin"},
         "final": {"arms": list(ARMS), "n_synthetic": 12, "max_new_tokens": 48}}
FULL = {**QUICK, "source": {"n_people": 30, "n_noise": 40, "n_long": 2, "n_seed_people": 40},
        "train": {**QUICK["train"], "epochs": 30, "lr": 3e-3, "batch_size": 32}, "final": {**QUICK["final"], "n_synthetic": 30}}


def oracle_instruction(p: dict, docs: dict) -> str:
    "A right instruction for a fact page (one of its entity questions, by a seeded hash); noise pages keep the backward model's."
    doc = docs[p["doc_id"]]
    if doc.get("kind") == "noise": return p["instruction"]
    qs = entity_questions(doc)
    return qs[int(stable_hash("oracle-q", p["key"]), 16) % len(qs)]["question"]


def one_seed(seed: int, base_cfg: dict, work: Path) -> dict:
    d = json.loads(json.dumps(base_cfg)); d["seed"] = seed; d["run_dir"] = str(work / f"seed_{seed}")
    r = BTRun(load_config(d)); s = r.run()
    # positive control: right instructions for the fact pages (an oracle backward model), the same likelihood filter,
    # filtered vs raw at the same size, raw responses: with facts learnable, more fact pages in the budget must mean more answers
    docs = {x["id"]: x for x in r.docs}
    pairs = [{**p, "instruction": oracle_instruction(p, docs)} for p in r.scored]
    fwd = r.dir / "forward"
    g = r.generator(str(fwd))
    pairs = [{**p, "score": sc} for p, sc in zip(pairs, likelihood_scores(g.model, g.tokenizer, pairs, 16, r.cfg.model.chat))]
    kept, _ = select_pairs(pairs, "likelihood", r.cfg.filter.keep_fraction, seed=seed)
    arms = arm_pairs(pairs, kept, s["n_synthetic_per_arm"], seed)
    judge = rule_judge({q["question"]: q["answer"] for q in r.questions})
    pc, answers = {}, {}
    for name in ("raw", "filtered"):
        path = train_sft(r.base, sft_dataset(r.seeds, arms[name], name), r.dir / "positive_control" / name, r.cfg.train, seed, r.cfg.model.chat)
        ans = answer_questions(r.generator(path), r.questions, WEB_TAG, r.cfg.final.max_new_tokens, r.cfg.model.chat)
        answers[name] = [x["response"] for x in ans]
        pc[name] = {**qa_metrics(ans), "noise_share": sum(p["kind"] == "noise" for p in arms[name]) / len(arms[name])}
    pc["filtered"]["win_rate_vs_raw"] = win_rate(judge, [q["question"] for q in r.questions], answers["filtered"], answers["raw"])
    from latent_lm.core import read_jsonl
    targets = {a: [x for x in read_jsonl(f) if x["source"] == "synthetic"] for a, f in s["datasets"].items()}
    s["target_stats"] = {a: {"assistant_style": sum(is_assistant_style(x["completion"]) for x in xs) / len(xs),
                             "noise_share": sum(docs[x["doc_id"]].get("kind") == "noise" for x in xs) / len(xs)} for a, xs in targets.items()}
    return {"seed": seed, "summary": s, "pc": pc, "run": r}


def smollm2_rewrites(run, n: int) -> dict:
    "SmolLM2-135M-Instruct rewrites n fact pages of the filtered arm with the paper's prompt, given the right instruction."
    from latent_lm.lm import load_lm, smollm2_gguf_path
    from latent_lm.generate import HFGenerator
    docs = {d["id"]: d for d in run.docs}
    pairs = [{**p, "instruction": oracle_instruction(p, docs)} for p in run.arm_pairs["filtered"] if p["kind"] != "noise"][:n]
    t = time.time()
    m, tok = load_lm(smollm2_gguf_path())
    recs = rewrite_pairs(HFGenerator(m, tok, batch_size=n), pairs, "smollm2-135m-instruct", 1.0, 0.9, 160, run.cfg.seed, chat=True)
    out = []
    for p, x in zip(pairs, recs):
        facts = [str(v) for v in docs[p["doc_id"]]["facts"].values()]
        y = x["rewritten"]
        share = lambda s: sum(answer_correct(s, f) for f in facts) / len(facts)
        out.append({"doc_id": p["doc_id"], "instruction": p["instruction"], "status": x["status"], "rewritten": y,
                    "output_head": x["output"][:300], "facts_in_output": share(x["output"]),
                    "facts_kept": None if y is None else share(y), "boilerplate_left": None if y is None else has_boilerplate(y)})
    ok = [o for o in out if o["rewritten"]]
    return {"n": len(out), "parsed": len(ok), "mean_facts_kept": statistics.fmean(o["facts_kept"] for o in ok) if ok else None,
            "mean_facts_in_output": statistics.fmean(o["facts_in_output"] for o in out) if out else None,
            "boilerplate_left": sum(o["boilerplate_left"] for o in ok), "seconds": round(time.time() - t, 1), "records": out}


def plot(res: dict, runs: list, out: Path):
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 3, figsize=(14, 3.6))
    arms = [a for a in res["arms"]]
    for j, (m, lab) in enumerate((("qa_accuracy", "QA accuracy"), ("assistant_style", "assistant format"), ("win_rate_vs_raw", "win rate vs raw"))):
        xs = [i + (j - 1) * 0.27 for i in range(len(arms))]
        axs[0].bar(xs, [res["arms"][a][m] for a in arms], 0.27, yerr=[res["arms"][a][f"{m}_std"] for a in arms], label=lab, capsize=2)
    axs[0].set_xticks(range(len(arms)), [a.replace("_", "\n") for a in arms], fontsize=7); axs[0].set_ylim(0, 1.05)
    axs[0].legend(fontsize=7); axs[0].set_title(f"Arms at equal size ({len(runs)} seeds; rewriter: stand-in)", fontsize=9)
    plot_funnel(runs[0]["summary"]["funnel"], axs[1], title=f"Funnel (seed {runs[0]['seed']})")
    for t in axs[1].get_xticklabels(): t.set_fontsize(6)
    pn = res["premise"]["numbers"]
    axs[2].bar(["noise share\npool", "noise share\nkept", "drop\nprecision", "drop\nrecall", "instruction names\nright entity"],
               [pn["noise_share_pool"], pn["noise_share_kept"], pn["drop_precision"], pn["drop_recall"], pn["instruction_names_entity"]], color="C2")
    axs[2].set_ylim(0, 1); axs[2].set_title("Premise: bad pairs and the likelihood filter", fontsize=9)
    for t in axs[2].get_xticklabels(): t.set_fontsize(7)
    fig.tight_layout(); fig.savefig(out, dpi=110); plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the <= 15 minute setting")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--smollm2", type=int, default=4, help="SmolLM2 rewrites of this many filtered pairs (0: skip)")
    ap.add_argument("--work", default="/tmp/latent_lm_bench/backtranslate", help="scratch folder for the runs")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args(argv)
    t0 = time.time()
    work = Path(a.work); shutil.rmtree(work, ignore_errors=True); work.mkdir(parents=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    cfg = QUICK if a.quick else FULL
    runs = [one_seed(s, cfg, work) for s in a.seeds]
    names = list(ARMS)
    arms = {x: arm_stats({m: [r["summary"]["arms"][x][m] for r in runs] for m in ("qa_accuracy", "assistant_style", "win_rate_vs_raw")},
                         a.seeds) for x in names}
    mean = lambda x, m: arms[x][m]
    best = lambda m: mean("filtered_rewritten", m) > max(mean(x, m) for x in names if x != "filtered_rewritten")
    wins = [best("win_rate_vs_raw"), best("qa_accuracy")]
    verdict = "reproduced" if all(wins) else "partial" if any(wins) else "not reproduced"
    fs = [r["summary"]["filter_stats"] for r in runs]
    pm = {k: statistics.fmean(f[k] for f in fs) for k in ("noise_share_pool", "noise_share_kept", "drop_precision", "drop_recall", "instruction_names_entity")}
    premise_holds = pm["noise_share_pool"] >= 0.2 and pm["drop_precision"] > pm["noise_share_pool"]
    pc_raw = [r["pc"]["raw"]["qa_accuracy"] for r in runs]; pc_fil = [r["pc"]["filtered"]["qa_accuracy"] for r in runs]
    gain = [f_ - r_ for f_, r_ in zip(pc_fil, pc_raw)]
    pc_shows = statistics.fmean(gain) > 0.05
    sm = smollm2_rewrites(runs[0]["run"], a.smollm2) if a.smollm2 > 0 else None
    s0 = runs[0]["summary"]
    for f in save_figures(runs[0]["run"].dir, s0):
        if f.name in ("funnel.png", "example.png"): shutil.copyfile(f, Path(a.out) / f"backtranslate_{f.name}")
    res = {"claim": CLAIM,
           "command": "python bench/backtranslate.py" + (" --quick" if a.quick else "") + (f" --smollm2 {a.smollm2}" if a.smollm2 != 4 else ""),
           "setup": {"config": cfg, "seeds": a.seeds, "rewriter": STANDIN, "rewriter_is_standin": True, "filter": "likelihood (small-scale stand-in for the 1-5 rating), top 50%",
                     "n_documents": s0["n_documents"], "n_seed_pairs": s0["n_seed"], "n_questions": s0["n_questions"],
                     "n_synthetic_per_arm": s0["n_synthetic_per_arm"], "wall_seconds": None, "machine": machine_info()},
           "arms": arms, "verdict": verdict,
           "premise": {"what": ("The generated pool holds bad pairs the filter can detect: the share of pairs from noise pages "
                                "(>= 0.2 required), the filter's precision at dropping them (must beat that share, i.e. better than a "
                                "random drop) and recall, and the share of fact-page instructions naming the page's own entity "
                                "(below 1 = wrong instructions). Means over seeds."),
                       "numbers": {k: round(v, 4) for k, v in pm.items()}, "holds": premise_holds},
           "positive_control": {"what": ("Right instructions for the fact pages (an oracle backward model: one of the page's entity "
                                         "questions; noise pages keep the model's instruction), scored by the same forward model and "
                                         "likelihood filter: filtered vs raw pairs at the same size, raw responses. With facts learnable, "
                                         "a budget holding more fact pages must raise QA accuracy (rule: mean gain > 0.05)."),
                                "numbers": {"filtered_qa_accuracy": round(statistics.fmean(pc_fil), 4), "raw_qa_accuracy": round(statistics.fmean(pc_raw), 4),
                                            "gain_per_seed": [round(g, 4) for g in gain],
                                            "noise_share_raw": round(statistics.fmean(r["pc"]["raw"]["noise_share"] for r in runs), 4),
                                            "noise_share_filtered": round(statistics.fmean(r["pc"]["filtered"]["noise_share"] for r in runs), 4),
                                            "filtered_win_rate_vs_raw": round(statistics.fmean(r["pc"]["filtered"]["win_rate_vs_raw"] for r in runs), 4)},
                                "shows": pc_shows},
           "notes": ""}
    res["training_targets"] = {a: {k: round(statistics.fmean(r["summary"]["target_stats"][a][k] for r in runs), 4)
                                   for k in ("assistant_style", "noise_share")} for a in names}
    if sm: res["smollm2_rewrites"] = sm
    res["setup"]["wall_seconds"] = round(time.time() - t0, 1)
    res["notes"] = notes(res, runs, sm)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    plot(res, runs, out / "backtranslate.png")
    write_results("backtranslate", res, md_text(res), out)
    print(md_text(res))
    return 0


def notes(res, runs, sm) -> str:
    A, P, C, T = res["arms"], res["premise"]["numbers"], res["positive_control"]["numbers"], res["training_targets"]
    f = lambda x, m: f"{A[x][m]:.3f}"
    level = "near zero" if max(A[x]["qa_accuracy"] for x in A) < 0.1 else "low"
    trails = T["filtered_rewritten"]["assistant_style"] < T["rewritten"]["assistant_style"]
    t = ("The rewriter in every arm is the deterministic STAND-IN, not an aligned LLM: it keeps the page's sentences that share "
         "a word with the instruction (its first line when none does) and puts an assistant opener in front; the paper's rewriter "
         "(Llama-2-70B-chat) also fixes flow and answers directly. What decides this run is the backward model: trained from scratch on "
         f"{res['setup']['n_seed_pairs']} seed pairs, it names the page's own entity in {P['instruction_names_entity']:.0%} of its "
         "instructions, so no synthetic prompt ties a page's facts to the names the test questions use, and QA accuracy stays "
         f"{level} in every arm (raw {f('raw','qa_accuracy')}, filtered {f('filtered','qa_accuracy')}, rewritten {f('rewritten','qa_accuracy')}, "
         f"filtered_rewritten {f('filtered_rewritten','qa_accuracy')}). The filter works as a noise detector (noise pages "
         f"{P['noise_share_pool']:.0%} of the pool, {P['noise_share_kept']:.0%} of the kept pairs; drop precision "
         f"{P['drop_precision']:.2f}, recall {P['drop_recall']:.2f}), and in the positive control (right instructions) the same "
         f"filter moves QA accuracy from {C['raw_qa_accuracy']:.3f} (raw) to {C['filtered_qa_accuracy']:.3f} (filtered). The win rate therefore "
         f"follows the answer format: rewriting moves it from raw {f('raw','assistant_style')} to {f('rewritten','assistant_style')} "
         f"(rewritten) and {f('filtered_rewritten','assistant_style')} (filtered_rewritten). Share of the synthetic training targets in the "
         f"assistant format: rewritten {T['rewritten']['assistant_style']:.0%} (noise pages {T['rewritten']['noise_share']:.0%}), "
         f"filtered_rewritten {T['filtered_rewritten']['assistant_style']:.0%} (noise pages {T['filtered_rewritten']['noise_share']:.0%})")
    t += ("; the filter keeps fact pages, whose first line is a menu or byline, and with the garbled instructions the stand-in "
          "often falls back to that line. " if trails else ". ")
    t += ("A backward model that copies names (a pretrained base, or far more seed pairs and steps) is what this scale lacks; the "
          "paper's effect is measured on open-ended instructions (AlpacaEval), which this setting cannot do.")
    if sm: t += (f" SmolLM2-135M-Instruct, given {sm['n']} filtered fact pages with the right instruction and the paper's rewrite "
                 f"prompt: {sm['parsed']} of {sm['n']} outputs held a [RES]...[/RES] answer"
                 + ("" if sm["mean_facts_kept"] is None else f" (keeping {sm['mean_facts_kept']:.0%} of the page's facts, {sm['boilerplate_left']} with boilerplate left)")
                 + f"; its outputs held {sm['mean_facts_in_output']:.0%} of the page's facts on average; {sm['seconds']} s. "
                 "A 135M model does not follow the [RES] protocol reliably, so the bench uses the stand-in.")
    return t


def md_text(res: dict) -> str:
    lines = ["# Back-and-forth translation: the curation ablation at equal size", "", f"Claim: {res['claim']}", "", f"Command: `{res['command']}`", "",
             f"**Verdict: {res['verdict']}** (rewriter: stand-in, not an LLM)", "",
             "| arm | QA accuracy | assistant format | win rate vs raw |", "|---|---|---|---|"]
    for a, m in res["arms"].items():
        lines.append(f"| {a} | {m['qa_accuracy']:.3f} ± {m['qa_accuracy_std']:.3f} | {m['assistant_style']:.3f} ± {m['assistant_style_std']:.3f} "
                     f"| {m['win_rate_vs_raw']:.3f} ± {m['win_rate_vs_raw_std']:.3f} |")
    lines += ["", f"Seeds: {res['arms']['raw']['seeds']}; setup: {res['setup']['n_documents']} documents, {res['setup']['n_seed_pairs']} seed pairs, "
              f"{res['setup']['n_questions']} held-out questions, {res['setup']['n_synthetic_per_arm']} synthetic pairs per arm; "
              f"{res['setup']['wall_seconds']} s wall.", "",
              f"Premise ({'holds' if res['premise']['holds'] else 'does not hold'}): {res['premise']['what']} {res['premise']['numbers']}", "",
              f"Positive control ({'shows' if res['positive_control']['shows'] else 'does not show'}): {res['positive_control']['what']} "
              f"{res['positive_control']['numbers']}", "", f"Notes: {res['notes']}", "", "![results](backtranslate.png)", "",
              "![funnel](backtranslate_funnel.png)", "", "![example](backtranslate_example.png)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
