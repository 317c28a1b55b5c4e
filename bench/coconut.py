"""Benchmark: Coconut against CoT, No-CoT and the paper's ablations on a ProsQA-style task, trained from scratch on CPU.

The claim under test (Hao et al. 2024, Table 1): on ProsQA, Coconut answers more accurately than CoT and No-CoT while
generating far fewer tokens than CoT. The paper's setting is GPT-2 (124M, pretrained) on 17,886 natural-language ProsQA
graphs, 50 epochs on 4 A100s; here it is the symbolic ProsQA of `latent_lm.coconut.data` (one token per node and per
edge, 10-node graphs, 2-3 hops, node names re-drawn every epoch) and a 2-layer, d=64 GPT-2 trained from scratch with the
settings of `configs/coconut/tiny.yaml` (c=1, three latent stages, thoughts right after the question), every arm with
the same number of epochs:

  no_cot                 question -> answer
  cot                    question -> steps -> answer
  coconut                the curriculum: stage k replaces the first k steps by k continuous thoughts
  coconut_no_curriculum  the final stage (all steps replaced by 3 thoughts) from the first epoch
  pause_as_thought       the same curriculum with a learned <pause> token in place of each thought

Per arm and seed: accuracy on 500 held-out graphs (greedy, the paper's answer check) and tokens per answer (decoded
tokens + continuous thoughts, the paper's count; EOS not counted), with at least 3 seeds.

In the same run, on one thread:
  * training step (forward + backward) of the cached multi-pass forward (`CoconutLM`) against the naive reference that
    recomputes the whole prefix for every thought (`naive_forward`), on the benchmark's batches and on natural-language
    ProsQA (~170 tokens, 6 thoughts); as ratios naive / cached (and against a plain forward without thoughts);
  * generation throughput (answers per second) of batched cached generation against batch-1 cached decoding and
    against the official-style decoding (batch 1, no KV cache, `naive_generate`); outputs are checked identical.

Verdict rule (stated in the claim): "reproduced" if Coconut's mean accuracy exceeds both CoT's and No-CoT's by more than
two standard errors of the difference (and by at least 2 points) and Coconut's tokens per answer are at most half of
CoT's; "partial" if it beats at least one of them that way; "not reproduced" otherwise.

Premise (measured from the arms, same two-standard-error rule): the task needs more serial reasoning than one forward pass,
i.e. CoT beats No-CoT. Positive control: not built yet (null in the results; issue 19 builds one).

Run: python bench/coconut.py --quick   (writes bench/results/coconut.json, coconut.md, coconut.png through bench/_common.py;
finished runs are cached under --work DIR and reused when the command is rerun with the same --work)
"""
from __future__ import annotations
import argparse, json, math, statistics, subprocess, sys, tempfile, time
from pathlib import Path

from _common import ROOT, bench_env, machine_info, arm_stats, write_results
bench_env()                                         # before torch / lightning / transformers are imported

import torch

ARMS = {"no_cot": "no_cot", "cot": "cot", "coconut": "coconut", "coconut_no_curriculum": "no_curriculum",
        "pause_as_thought": "pause_as_thought"}
EXTRA_ARMS = {"pause": "pause", "no_thought": "no_thought"}
# the model the latent-search analysis reads: Coconut trained with stage mixing (uniform_prob 0.3, the paper's analysis
# setting), so that it still writes language steps when the end of thought is forced early; not one of the compared arms
ANALYSIS_ARM, ANALYSIS_MIX = "coconut_mix03", 0.3
CONFIG = ROOT / "configs" / "coconut" / "tiny.yaml"
N_TEST, TEST_SEED = 500, 7_654_321
# quick = configs/coconut/tiny.yaml as it is (16 epochs of 4,000 graphs: stage 0 for 4 epochs, 3 per latent stage,
# 3 in the final stage); full = the same schedule stretched 3x (48 epochs) on 8,000 graphs.
MODES = {"quick": dict(model={}, data={}, trainer={}),
         "full": dict(model=dict(first_stage_epochs=12, epochs_per_stage=9), data=dict(n_train=8000), trainer=dict(max_epochs=48)),
         "smoke": dict(model=dict(first_stage_epochs=1, epochs_per_stage=1), data=dict(n_train=128, n_val=32), trainer=dict(max_epochs=5))}


def config() -> dict:
    "configs/coconut/tiny.yaml as `latent-lm coconut fit` reads it (LightningCLI's parser, defaults filled in)."
    from latent_lm.coconut.train import resolve_config
    return resolve_config(CONFIG)


def test_records(task_kwargs: dict) -> list[dict]:
    from latent_lm.coconut.data import make_symbolic_prosqa, load_coconut_json
    return load_coconut_json(make_symbolic_prosqa(N_TEST, seed=TEST_SEED, **task_kwargs))


# ------------------------------------------------------------------------------------------------------------- one run
def run_one(arm: str, seed: int, mode: str, out: Path) -> dict:
    "Train one arm with one seed, evaluate on the held-out graphs; returns the record written to `out/result.json`."
    torch.set_num_threads(1)
    import pandas as pd
    from latent_lm.coconut.train import fit_coconut
    variant = {**ARMS, **EXTRA_ARMS, ANALYSIS_ARM: "coconut"}[arm]
    ov = MODES[mode]
    mix = {"uniform_prob": ANALYSIS_MIX} if arm == ANALYSIS_ARM else {}
    cfg = config()
    t0, c0 = time.time(), time.process_time()
    mod, dm, met = fit_coconut(CONFIG, out, variant=variant, seed=seed, model={**ov["model"], **mix, "save_hf": arm in ("coconut", ANALYSIS_ARM) and seed == 0},
                               data={**ov["data"], "n_test": 0}, trainer={**ov["trainer"], "enable_checkpointing": False})
    train_s, train_cpu_s = time.time() - t0, time.process_time() - c0
    recs = test_records(dict(cfg["data"].get("task_kwargs") or {}))[:40 if mode == "smoke" else None]
    t1 = time.time()
    ev = mod.evaluate(recs, stage=mod.curriculum.final_stage, max_new_tokens=cfg["model"].get("max_new_tokens", 8))
    eval_s = time.time() - t1
    curve = []
    mp = out / "metrics.csv"
    if mp.exists():
        log = pd.read_csv(mp)
        if "val/acc" in log:
            v = log.dropna(subset=["val/acc"])
            curve = [{"epoch": int(e), "val_acc": float(a), "stage": float(s) if s == s else None}
                     for e, a, s in zip(v["epoch"], v["val/acc"], v.get("stage", [float("nan")] * len(v)))]
    opts = [{r["idx_to_symbol"][r["target"]], r["idx_to_symbol"][r["neg_target"]]} for r in recs]
    picked = [x["pred"] in o for x, o in zip(ev["results"], opts)]          # answered with one of the two options
    res = {"arm": arm, "variant": variant, "seed": seed, "acc": ev["acc"], "tokens_per_answer": ev["tokens_per_answer"],
           "option_rate": sum(picked) / len(picked),
           "acc_given_option": sum(x["correct"] for x, p in zip(ev["results"], picked) if p) / max(1, sum(picked)),
           "texts": [x["text"] for x in ev["results"]], "n_thoughts": [x["n_thoughts"] for x in ev["results"]],
           "decoded_tokens": ev["tokens"], "n_test": ev["n"], "train_s": train_s, "train_cpu_s": train_cpu_s, "eval_s": eval_s,
           "steps": int(mod.trainer.global_step), "epochs": int(mod.trainer.current_epoch),
           "final_train_loss": met.get("train/loss"), "stages": [h["stage"] for h in mod.history], "val_curve": curve,
           "examples": [{k: r[k] for k in ("text", "gold", "correct")} for r in ev["results"][:3]]}
    (out / "result.json").write_text(json.dumps(res))
    return res


# ------------------------------------------------------------------------------------------------------------- timing
def _median_time(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def step_timing(reps: int) -> dict:
    "Forward+backward time: cached multi-pass vs naive recompute (and a plain pass without thoughts), two sequence shapes."
    torch.set_num_threads(1)
    from latent_lm.coconut.train import CoconutModule, CoconutCollator, Curriculum
    from latent_lm.coconut.data import make_symbolic_prosqa, make_prosqa, symbolic_vocab, record_words
    from latent_lm.coconut.model import naive_forward
    cfg = config()
    out = {}
    for name, n_th, batch, recs_fn, words_fn in [
        ("symbolic_prosqa", 3, 64, lambda: make_symbolic_prosqa(64, seed=1, **cfg["data"]["task_kwargs"]), lambda r: symbolic_vocab(10)),
        ("prosqa_text", 6, 16, lambda: make_prosqa(16, seed=1), lambda r: record_words(r))]:
        recs = recs_fn()
        m = CoconutModule(**{**cfg["model"], "max_latent_stage": n_th, "max_len": 512, "save_hf": False}).build(words=words_fn(recs))
        enc = [m.encode(r, i) for i, r in enumerate(recs)]
        coc = m.collator(enc, m.curriculum.final_stage, mix=False)
        plain = CoconutCollator(Curriculum("no_cot"), m.ids)(enc, 0, mix=False)
        base, lat = m.coconut.base, m.ids.latent
        base.train()
        def fb(f):
            def g():
                base.zero_grad(set_to_none=True); f().loss.backward()
            return g
        fns = {"cached": fb(lambda: m.coconut(**coc)),
               "naive": fb(lambda: naive_forward(base, coc["input_ids"], lat, coc["attention_mask"], coc["labels"], coc["position_ids"])),
               "no_thoughts": fb(lambda: m.coconut(**plain))}
        for f in fns.values(): f()                      # warm up
        t = {k: [] for k in fns}
        for _ in range(reps):                           # interleaved rounds: contention hits all arms alike
            for k, f in fns.items(): t[k].append(_median_time(f, 1))
        med = {k: statistics.median(v) for k, v in t.items()}
        out[name] = {"batch": batch, "thoughts": n_th, "seq_len": int(coc["input_ids"].shape[1]), "ms": {k: v * 1e3 for k, v in med.items()},
                     "naive_over_cached": med["naive"] / med["cached"], "cached_over_no_thoughts": med["cached"] / med["no_thoughts"]}
    return out


def generation_timing(reps: int, model_dir: Path | None) -> dict:
    "Answers per second: batched cached generation vs batch-1 cached vs batch-1 uncached (official-style); outputs compared."
    torch.set_num_threads(1)
    from latent_lm.coconut.train import load_coconut, CoconutModule
    from latent_lm.coconut.data import symbolic_vocab
    from latent_lm.coconut.model import naive_generate
    cfg = config()
    recs = test_records(cfg["data"]["task_kwargs"])[:128]
    if model_dir is not None and (model_dir / "coconut.json").exists():
        lc = load_coconut(model_dir); model, prompts, src = lc.model, [lc.prompt(r) for r in recs], "trained coconut (seed 0)"
    else:
        m = CoconutModule(**{**cfg["model"], "save_hf": False}).build(words=symbolic_vocab(10))
        model, prompts, src = m.coconut, [m.prompt_ids(r, 3) for r in recs], "untrained"
    model.eval()
    T = 8
    n1 = 32                                                 # batch-1 arms on the first 32 prompts (same per-answer cost)
    NO_EOS = -1                                             # every answer runs the full T tokens, so all arms do the same work
    batched = model.generate(prompts, T, batch_size=64, eos_id=NO_EOS)
    single = [model.generate([p], T, eos_id=NO_EOS).tokens[0] for p in prompts[:n1]]
    naive = [naive_generate(model.base, p, model.latent_id, T, None) for p in prompts[:n1]]
    same = batched.tokens[:n1] == single == naive
    t = {"batched": [], "batch1": [], "naive_batch1": []}
    for _ in range(reps):
        t["batched"].append(_median_time(lambda: model.generate(prompts, T, batch_size=64, eos_id=NO_EOS), 1) / len(prompts))
        t["batch1"].append(_median_time(lambda: [model.generate([p], T, eos_id=NO_EOS) for p in prompts[:n1]], 1) / n1)
        t["naive_batch1"].append(_median_time(lambda: [naive_generate(model.base, p, model.latent_id, T, None) for p in prompts[:n1]], 1) / n1)
    per = {k: statistics.median(v) for k, v in t.items()}
    return {"model": src, "max_new_tokens": T, "batch_size": 64, "n_prompts": len(prompts), "identical_outputs": bool(same),
            "generated_tokens_per_answer": sum(batched.n_tokens) / len(prompts), "thoughts_per_answer": sum(batched.n_thoughts) / len(prompts),
            "answers_per_s": {k: 1.0 / v for k, v in per.items()},
            "batched_over_batch1": per["batch1"] / per["batched"], "batched_over_naive": per["naive_batch1"] / per["batched"]}


def search_analysis(model_dir: Path, out: Path) -> dict | None:
    "Frontier values, parallelism, value vs height and logit lens (coconut.analysis) of the trained seed-0 Coconut model."
    torch.set_num_threads(1)
    if not (model_dir / "coconut.json").exists(): return None
    import matplotlib; matplotlib.use("Agg")
    from latent_lm.coconut.train import load_coconut
    from latent_lm.coconut.analysis import latent_search
    cfg = config()
    from latent_lm.coconut.analysis import reasoning_breakdown, plot_reasoning
    import matplotlib.pyplot as plt
    recs = test_records(cfg["data"]["task_kwargs"])[:300]
    lc = load_coconut(model_dir)
    res = latent_search(lc, recs, out_dir=out)
    norm = {}
    for k, vals in res["values"].items():        # the same values as shares of the frontier (the model also puts mass on "###")
        shares = [{n: x / sum(v.values()) for n, x in v.items()} for v in vals.values() if sum(v.values()) > 0]
        norm[str(k)] = {"top1_share": statistics.mean(max(s.values()) for s in shares) if shares else None}
    sweep = {}
    K = lc.curriculum.max_latent_stage * lc.curriculum.c_thought
    for k in range(K + 1):                      # the paper's k-sweep: force the end of thought after k thoughts
        ans = lc.answer(recs, n_thoughts=k, max_new_tokens=8)
        sweep[f"k={k}"] = {"acc": statistics.mean(float(x["correct"]) for x in ans), **reasoning_breakdown(recs, [x["text"] for x in ans], k)}
    ax = plot_reasoning({k: v for k, v in sweep.items()}, title="analysis model: reasoning class with the end of thought forced after k thoughts")
    for i, v in enumerate(sweep.values()): ax.text(i, 1.01, f"acc {v['acc']:.2f}", ha="center", fontsize=7)
    ax.figure.savefig(out / "k_sweep_reasoning.png", dpi=110, bbox_inches="tight"); plt.close(ax.figure)
    return {"n": len(recs), "uniform_prob": ANALYSIS_MIX, "summary": {str(k): {**v, **norm.get(str(k), {})} for k, v in res["summary"].items()},
            "k_sweep": sweep, "figures": [str(Path(f).relative_to(out.parent)) for f in res["figures"]] + ["coconut_search/k_sweep_reasoning.png"]}


# ------------------------------------------------------------------------------------------------------------- verdict
def summarise(runs: list[dict]) -> dict:
    arms = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rs = sorted([r for r in runs if r["arm"] == arm], key=lambda r: r["seed"])
        keys = ("acc", "option_rate", "acc_given_option", "tokens_per_answer", "decoded_tokens", "train_s", "train_cpu_s", "final_train_loss")
        a = arm_stats({k: [r[k] for r in rs if r.get(k) is not None] for k in keys if any(r.get(k) is not None for r in rs)},
                      [r["seed"] for r in rs])
        a["acc_per_seed"] = [r["acc"] for r in rs]
        a["variant"] = rs[0]["variant"]; a["steps"] = rs[0]["steps"]
        arms[arm] = a
    return arms


def beats(arms: dict, a: str, b: str) -> tuple[bool, float, float]:
    "Does arm `a` beat arm `b` by > 2 standard errors of the difference and >= 2 points? Returns (win, diff, 2*se)."
    A, B = arms[a], arms[b]
    n_a, n_b = len(A["acc_per_seed"]), len(B["acc_per_seed"])
    se = math.sqrt(A["acc_std"] ** 2 / n_a + B["acc_std"] ** 2 / n_b)
    d = A["acc"] - B["acc"]
    return (d > 2 * se and d >= 0.02), d, 2 * se


def verdict(arms: dict) -> tuple[str, dict]:
    w_cot, d_cot, m_cot = beats(arms, "coconut", "cot")
    w_no, d_no, m_no = beats(arms, "coconut", "no_cot")
    tok_ratio = arms["coconut"]["tokens_per_answer"] / max(arms["cot"]["tokens_per_answer"], 1e-9)
    fewer = tok_ratio <= 0.5
    v = "reproduced" if (w_cot and w_no and fewer) else "partial" if (w_cot or w_no) else "not reproduced"
    return v, {"coconut_minus_cot": d_cot, "margin_cot": m_cot, "beats_cot": w_cot, "coconut_minus_no_cot": d_no, "margin_no_cot": m_no,
               "beats_no_cot": w_no, "tokens_coconut_over_cot": tok_ratio, "far_fewer_tokens": fewer}


def premise(arms: dict) -> dict:
    "The premise Coconut relies on: the task needs more serial steps than one pass, so CoT beats No-CoT (same rule as the verdict)."
    win, d, m = beats(arms, "cot", "no_cot")
    return {"what": "the task needs more serial reasoning than one forward pass: CoT's accuracy exceeds No-CoT's by more than two "
                    "standard errors of the difference and at least 2 points (Hao et al. 2024, Table 1: ProsQA CoT 77.5% vs No-CoT 76.7%, "
                    "GSM8k 42.9% vs 16.5%)",
            "numbers": {"cot_acc": arms["cot"]["acc"], "no_cot_acc": arms["no_cot"]["acc"], "cot_minus_no_cot": d, "two_se": m},
            "holds": bool(win)}


POSITIVE_CONTROL = {"what": "a regime built so that continuous thoughts must help if the code is right (issue 19 builds it)",
                    "numbers": {}, "shows": None}


# ------------------------------------------------------------------------------------------------------------- report
def notes(arms: dict, det: dict, steps: dict, gen: dict, mode: str) -> str:
    c, t, n = arms["coconut"], arms["cot"], arms["no_cot"]
    bs = config()["data"].get("batch_size", 64)
    chance = 0.5
    lines = [
        f"Accuracy on {N_TEST} held-out symbolic ProsQA graphs (binary choice: chance is {chance:.0%} if the model always answers with one "
        f"of the two options): Coconut {c['acc']:.1%} ± {c['acc_std']:.1%}, CoT {t['acc']:.1%} ± {t['acc_std']:.1%}, No-CoT "
        f"{n['acc']:.1%} ± {n['acc_std']:.1%}" + "".join(f", {k} {a['acc']:.1%} ± {a['acc_std']:.1%}" for k, a in arms.items()
                                                        if k not in ("coconut", "cot", "no_cot")) + " (mean ± std over seeds).",
        "Share of answers naming one of the two options (the rest name another node or no node): "
        + ", ".join(f"{k} {a['option_rate']:.0%}" for k, a in arms.items()) + "; accuracy among those answers: "
        + ", ".join(f"{k} {a['acc_given_option']:.0%}" for k, a in arms.items()) + ".",
        f"Coconut − CoT = {det['coconut_minus_cot']:+.1%} (2 s.e. = {det['margin_cot']:.1%}); Coconut − No-CoT = "
        f"{det['coconut_minus_no_cot']:+.1%} (2 s.e. = {det['margin_no_cot']:.1%}).",
        f"Tokens per answer (paper's count: thoughts + decoded tokens): Coconut {c['tokens_per_answer']:.2f}, CoT {t['tokens_per_answer']:.2f}, "
        f"No-CoT {n['tokens_per_answer']:.2f} (ratio Coconut/CoT {det['tokens_coconut_over_cot']:.2f}). In this symbolic format every "
        "reasoning step is a single node token and c=1, so a continuous thought replaces exactly one token: the token saving the paper "
        "reports (14.2 vs 49.4 on ProsQA) comes from language steps that are ~8 BPE tokens each, and cannot appear here by construction.",
        f"Cost: a Coconut training step with {steps['symbolic_prosqa']['thoughts']} thoughts takes {steps['symbolic_prosqa']['cached_over_no_thoughts']:.1f}x "
        f"a plain step on these short sequences (n+1 sequential model calls); the naive recompute-the-prefix reference takes "
        f"{steps['symbolic_prosqa']['naive_over_cached']:.2f}x the cached multi-pass forward here and "
        f"{steps['prosqa_text']['naive_over_cached']:.2f}x on natural-language ProsQA ({steps['prosqa_text']['seq_len']} tokens, "
        f"{steps['prosqa_text']['thoughts']} thoughts). Batched cached generation answers {gen['batched_over_batch1']:.1f}x as many questions per "
        f"second as batch-1 cached decoding and {gen['batched_over_naive']:.1f}x as many as the official-style batch-1 uncached decoding "
        f"(outputs identical: {gen['identical_outputs']}).",
        "Scale: a CPU pilot, on ProsQA-like DAGs with a few thousand steps, found CoT learning to follow edges (75-85%) while the "
        "latent curriculum and pause-as-thought stayed near chance; the published small-model evidence for Coconut >> CoT "
        "on symbolic ProsQA (Zhu et al. 2025: 2-layer, 768-d GPT-2 from scratch, Coconut near 100% vs CoT ~75%) used 300 epochs x 14.8k "
        "graphs, about 4.4M training sequences (~24 h on 2 A100s), " + f"{4.4e6 / max(1, c['steps'] * bs):.0f}x the {c['steps'] * bs:,} sequences of "
        "this run; the paper's 97% used pretrained "
        "GPT-2 (124M) on 17.9k natural-language graphs for 50 epochs. A GPU run of configs/coconut/paper.yaml, or the tiny config with "
        "d=256-768 and ~50k steps, is the scale at which the claim can be tested.",
    ]
    pr = premise(arms)
    lines.append(f"Premise: CoT {t['acc']:.1%} vs No-CoT {n['acc']:.1%} ({pr['numbers']['cot_minus_no_cot']:+.1%}, two standard errors "
                 f"{pr['numbers']['two_se']:.1%}): the premise {'holds' if pr['holds'] else 'does not hold'}"
                 + ("." if pr["holds"] else "; where CoT does not beat answering directly at this budget, the run lacks the gap that continuous "
                    "thoughts are meant to close, and the verdict says little about Coconut either way.")
                 + " Positive control: not measured yet (null); issue 19 builds a regime in which continuous thoughts must help.")
    if mode == "quick":
        lines.append("This is the --quick run (configs/coconut/tiny.yaml as it is, ~1,000 optimizer steps per arm); `python bench/coconut.py` "
                     "runs the 3x longer schedule on twice the graphs.")
    return "\n\n".join(lines)


def markdown(res: dict) -> str:
    A = res["arms"]
    rows = ["| arm | accuracy | per seed | answers an option | accuracy when it does | tokens / answer | decoded tokens | train s (CPU s) |",
            "|---|---|---|---|---|---|---|---|"]
    for k, a in A.items():
        rows.append(f"| {k} | {a['acc']:.1%} ± {a['acc_std']:.1%} | {', '.join(f'{x:.1%}' for x in a['acc_per_seed'])} | "
                    f"{a['option_rate']:.1%} | {a['acc_given_option']:.1%} | "
                    f"{a['tokens_per_answer']:.2f} | {a['decoded_tokens']:.2f} | {a['train_s']:.0f} ({a['train_cpu_s'] or 0:.0f}) |")
    from latent_lm.coconut.analysis import REASONING_CLASSES
    rrows = ["| arm | " + " | ".join(REASONING_CLASSES) + " |", "|---|" + "---|" * len(REASONING_CLASSES)]
    for k, a in A.items():
        if a.get("reasoning"): rrows.append(f"| {k} | " + " | ".join(f"{a['reasoning'][c]:.1%}" for c in REASONING_CLASSES) + " |")
    st, g = res["timing"]["train_step"], res["timing"]["generation"]
    trows = ["| setting | batch x length | thoughts | cached ms | naive ms | no-thought ms | naive / cached | cached / no-thought |",
             "|---|---|---|---|---|---|---|---|"]
    for k, s in st.items():
        trows.append(f"| {k} | {s['batch']} x {s['seq_len']} | {s['thoughts']} | {s['ms']['cached']:.1f} | {s['ms']['naive']:.1f} | "
                     f"{s['ms']['no_thoughts']:.1f} | {s['naive_over_cached']:.2f} | {s['cached_over_no_thoughts']:.2f} |")
    grow = (f"| batched (64) | batch 1, cached | batch 1, no cache (official) | batched / batch 1 | batched / official | identical |\n|---|---|---|---|---|---|\n"
            f"| {g['answers_per_s']['batched']:.1f} /s | {g['answers_per_s']['batch1']:.1f} /s | {g['answers_per_s']['naive_batch1']:.1f} /s | "
            f"{g['batched_over_batch1']:.1f}x | {g['batched_over_naive']:.1f}x | {g['identical_outputs']} |")
    P, PC = res["premise"], res["positive_control"]
    text = (f"# Coconut on symbolic ProsQA ({res['setup']['mode']})\n\n**Claim.** {res['claim']}\n\n**Verdict: {res['verdict']}.**\n\n"
            f"Command: `{res['command']}`\n\n"
            f"**Premise** ({P['what']}): {'holds' if P['holds'] else 'does not hold'}; CoT {P['numbers']['cot_acc']:.1%} vs No-CoT "
            f"{P['numbers']['no_cot_acc']:.1%} (difference {P['numbers']['cot_minus_no_cot']:+.1%}, two standard errors "
            f"{P['numbers']['two_se']:.1%}).\n\n**Positive control**: {'not measured yet' if PC['shows'] is None else ('shows' if PC['shows'] else 'does not show')} "
            f"({PC['what']}).\n\n"
            f"Setup: {res['setup']['task']} {res['setup']['task_kwargs']}, {res['setup']['n_train']} training graphs re-labelled every epoch, "
            f"{res['setup']['model']}, {res['setup']['epochs']} epochs of batch {res['setup']['batch_size']}, curriculum {res['setup']['curriculum']}; "
            f"one thread per run, {res['setup']['workers']} runs in parallel. Training took {res['setup']['train_cpu_s_total']:.0f} CPU seconds "
            f"in all ({res['setup']['train_s_total']:.0f} s of wall time on a machine shared with other jobs).\n\n## Accuracy and tokens ({len(next(iter(A.values()))['seeds'])} seeds, {N_TEST} test graphs)\n\n"
            + "\n".join(rows)
            + "\n\n## What the answers look like (the paper's reasoning classes, `coconut.analysis.classify_reasoning`, mean over seeds)\n\n"
            + "\n".join(rrows) + "\n\n## Training step (one thread)\n\n" + "\n".join(trows)
            + f"\n\n## Generation throughput ({g['model']} model, {g['thoughts_per_answer']:.0f} thoughts then {g['max_new_tokens']} tokens per answer, answers per second)\n\n" + grow
            + search_md(res.get("latent_search"))
            + "\n\n## Notes\n\n" + res["notes"] + "\n\n![](coconut.png)\n")
    return text


def search_md(s: dict | None) -> str:
    if not s: return ""
    rows = ["| thoughts k | cases | frontier size | frontier mass | top-1 | top-3 | value, correct nodes | value, incorrect nodes | best node reaches target | random node reaches target |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda x: "–" if x is None else f"{x:.3f}"
    for k, v in s["summary"].items():
        rows.append(f"| {k} | {v['cases']} | {v['frontier_size']:.2f} | {f(v['frontier_mass'])} | {f(v['top1'])} | {f(v['top3'])} | "
                    f"{f(v['value_correct'])} | {f(v['value_incorrect'])} | {v['best_reaches_target']:.2f} | {v['random_reaches_target']:.2f} |")
    from latent_lm.coconut.analysis import REASONING_CLASSES
    sw = ["| k | accuracy | " + " | ".join(REASONING_CLASSES) + " |", "|---|---|" + "---|" * len(REASONING_CLASSES)]
    for k, v in s.get("k_sweep", {}).items():
        sw.append(f"| {k} | {v['acc']:.1%} | " + " | ".join(f"{v[c]:.1%}" for c in REASONING_CLASSES) + " |")
    return (f"\n\n## Latent search (`coconut.analysis`, {s['n']} test graphs)\n\n"
            f"The analysed model is Coconut trained like the `coconut` arm (seed 0) but with stage mixing (uniform_prob {s['uniform_prob']}, "
            f"the paper's analysis setting), so it still writes language steps when the end of thought is forced early; its final-stage "
            f"accuracy is {s.get('model_accuracy', float('nan')):.1%}. "
            "After k thoughts the next token is read as the next node (depth k+1); a node's value is its probability. Frontier mass = "
            "total probability on nodes at that depth; correct = the target is reachable from the node; the last two columns compare the "
            "top-valued frontier node with a frontier node drawn at random.\n\n" + "\n".join(rows)
            + "\n\nForcing the end of thought after k thoughts (the paper's k-sweep, reasoning classes of `classify_reasoning`):\n\n"
            + "\n".join(sw) + "\n\n" + " ".join(f"![]({p})" for p in s["figures"]))


def plot(res: dict, runs: list[dict], path: Path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    A = res["arms"]; names = list(A)
    fig, ax = plt.subplots(1, 5, figsize=(21, 3.8))
    x = range(len(names))
    ax[0].bar(x, [A[k]["acc"] for k in names], yerr=[A[k]["acc_std"] for k in names], color=[f"C{i}" for i in x], alpha=.7, capsize=3)
    for i, k in enumerate(names): ax[0].scatter([i] * len(A[k]["acc_per_seed"]), A[k]["acc_per_seed"], color="k", s=10, zorder=3)
    ax[0].axhline(0.5, color="0.5", ls=":", lw=1); ax[0].set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
    ax[0].set_ylabel("test accuracy"); ax[0].set_ylim(0, 1); ax[0].set_title("accuracy (dots: seeds; dotted: chance)", fontsize=9)
    ax[1].bar(x, [A[k]["tokens_per_answer"] for k in names], color=[f"C{i}" for i in x], alpha=.7)
    ax[1].bar(x, [A[k]["decoded_tokens"] for k in names], color="none", edgecolor="k", hatch="//", label="decoded")
    ax[1].set_xticks(list(x), names, rotation=30, ha="right", fontsize=8); ax[1].set_title("tokens per answer (hatched: decoded part)", fontsize=9)
    for i, k in enumerate(names):
        cs = [r["val_curve"] for r in runs if r["arm"] == k and r["val_curve"]]
        if not cs: continue
        n = min(len(c) for c in cs)
        ax[2].plot([c["epoch"] for c in cs[0][:n]], [statistics.mean(c[j]["val_acc"] for c in cs) for j in range(n)], color=f"C{i}", label=k)
    ax[2].set_xlabel("epoch"); ax[2].set_ylabel("val accuracy (stage's own thoughts)"); ax[2].legend(fontsize=7); ax[2].set_ylim(0, 1)
    ax[2].set_title("validation during training (mean over seeds)", fontsize=9)
    st, g = res["timing"]["train_step"], res["timing"]["generation"]
    labels = [f"step: naive/cached\n{k}" for k in st] + ["gen: batched/batch-1", "gen: batched/official"]
    vals = [s["naive_over_cached"] for s in st.values()] + [g["batched_over_batch1"], g["batched_over_naive"]]
    ax[3].barh(range(len(vals)), vals, color="C7"); ax[3].axvline(1, color="k", lw=1)
    ax[3].set_yticks(range(len(vals)), labels, fontsize=8); ax[3].set_xscale("log"); ax[3].set_title("speed ratios (>1: ours faster)", fontsize=9)
    for i, v in enumerate(vals): ax[3].text(v, i, f" {v:.1f}x", va="center", fontsize=8)
    if all(A[k].get("reasoning") for k in names):
        from latent_lm.coconut.analysis import plot_reasoning
        plot_reasoning({k: A[k]["reasoning"] for k in names}, ax=ax[4], title="reasoning classes (paper's metric)")
    fig.suptitle(f"Coconut benchmark: verdict {res['verdict']}", fontsize=10); fig.tight_layout(); fig.savefig(path, dpi=110, bbox_inches="tight"); plt.close(fig)


# ------------------------------------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the tiny config as it is (~15 min on 2 cores)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="training runs in parallel (one thread each)")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated; available: {', '.join({**ARMS, **EXTRA_ARMS})}")
    ap.add_argument("--timing-reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary folder); finished runs are reused")
    ap.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--_mode", default="quick", help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._worker:                                   # a worker process: run its jobs one after another (imports paid once)
        work, jobs = Path(a._worker[0]), a._worker[1:]
        for job in jobs:
            arm, seed = job.rsplit(":", 1); d = work / f"{arm}_s{seed}"
            if (d / "result.json").exists(): continue
            d.mkdir(parents=True, exist_ok=True)
            run_one(arm, int(seed), a._mode, d)
            print(f"done {job}", flush=True)
        return 0
    mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    global N_TEST
    if a.smoke: N_TEST = 40
    arms = [x for x in a.arms.split(",") if x]
    for x in arms:
        if x not in {**ARMS, **EXTRA_ARMS}: ap.error(f"unknown arm {x!r}")
    for req in ("coconut", "cot", "no_cot"):
        if req not in arms: ap.error(f"the verdict needs the arm {req!r}")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="coconut_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    jobs = [(arm, s) for s in range(a.seeds) for arm in sorted(arms, key=lambda k: k not in ("coconut", "coconut_no_curriculum"))]
    jobs.append((ANALYSIS_ARM, 0))
    todo = [j for j in jobs if not (work / f"{j[0]}_s{j[1]}" / "result.json").exists()]
    print(f"{len(jobs)} runs ({len(jobs) - len(todo)} already done) in {work}", flush=True)
    cost = {"coconut": 3, "coconut_no_curriculum": 3, "pause_as_thought": 2, ANALYSIS_ARM: 3}
    queues = [[] for _ in range(max(1, min(a.workers, len(todo))))]
    load = [0.0] * len(queues)
    for j in todo:                                  # longest first onto the least loaded worker
        i = load.index(min(load)); queues[i].append(j); load[i] += cost.get(j[0], 1)
    procs = []
    for i, q in enumerate(queues):
        if not q: continue
        log = open(work / f"worker{i}.log", "w")
        procs.append(subprocess.Popen([sys.executable, __file__, "--_mode", mode, "--_worker", str(work), *[f"{x}:{y}" for x, y in q]],
                                      stdout=log, stderr=subprocess.STDOUT))
    seen = set()
    while True:
        time.sleep(3)
        for arm, s in todo:
            rp = work / f"{arm}_s{s}" / "result.json"
            if (arm, s) not in seen and rp.exists():
                seen.add((arm, s)); r = json.loads(rp.read_text())
                print(f"[{time.time() - t_start:6.0f}s] {arm:>22} seed {s}: acc {r['acc']:.3f}, tokens {r['tokens_per_answer']:.2f}, "
                      f"train {r['train_s']:.0f}s", flush=True)
        if all(p.poll() is not None for p in procs): break
    bad = [i for i, p in enumerate(procs) if p.returncode != 0]
    missing = [j for j in jobs if not (work / f"{j[0]}_s{j[1]}" / "result.json").exists()]
    if bad or missing:
        print(f"runs failed: {missing}; see {work}/worker*.log", flush=True); return 1
    runs = [json.loads((work / f"{arm}_s{s}" / "result.json").read_text()) for arm, s in jobs if arm != ANALYSIS_ARM]
    mix_run = json.loads((work / f"{ANALYSIS_ARM}_s0" / "result.json").read_text())
    print("timing ...", flush=True)
    steps = step_timing(a.timing_reps)
    gen = generation_timing(a.timing_reps, work / "coconut_s0" / "hf_model")
    print("latent-search analysis (Coconut with stage mixing, seed 0) ...", flush=True)
    search = search_analysis(work / f"{ANALYSIS_ARM}_s0" / "hf_model", Path(a.out) / "coconut_search")
    if search: search["model_accuracy"] = mix_run["acc"]
    arms_sum = summarise(runs)
    from latent_lm.coconut.analysis import reasoning_breakdown, REASONING_CLASSES
    trecs = test_records(config()["data"]["task_kwargs"])[:N_TEST]
    for arm, summ in arms_sum.items():              # the paper's reasoning classes, averaged over seeds
        bds = [reasoning_breakdown(trecs, r["texts"], r["n_thoughts"]) for r in runs if r["arm"] == arm and "texts" in r]
        summ["reasoning"] = {c: statistics.mean(b[c] for b in bds) for c in REASONING_CLASSES} if bds else None
    order = [k for k in {**ARMS, **EXTRA_ARMS} if k in arms_sum]
    arms_sum = {k: arms_sum[k] for k in order}
    v, det = verdict(arms_sum)
    cfg = config()
    res = {
        "claim": "Coconut beats CoT and No-CoT on ProsQA with far fewer tokens than CoT (Hao et al. 2024, Table 1: 97.0% vs 77.5% / 76.7%, "
                 "14.2 vs 49.4 tokens). Rule: 'reproduced' if Coconut's mean accuracy exceeds CoT's and No-CoT's by more than two standard "
                 "errors of the difference and at least 2 points, and its tokens per answer are at most half of CoT's; 'partial' if it beats "
                 "at least one of CoT and No-CoT that way; 'not reproduced' otherwise.",
        "command": "python bench/coconut.py" + (" --smoke" if a.smoke else " --quick" if a.quick else "") + (f" --seeds {a.seeds}" if a.seeds != 3 else "")
                   + (f" --arms {a.arms}" if a.arms != ",".join(ARMS) else ""),
        "setup": {"mode": mode, "task": "symbolic ProsQA (latent_lm.coconut.data.make_symbolic_prosqa)", "task_kwargs": cfg["data"].get("task_kwargs"),
                  "n_train": MODES[mode]["data"].get("n_train", cfg["data"].get("n_train")), "n_test": N_TEST, "test_seed": TEST_SEED,
                  "relabel_every_epoch": cfg["data"].get("relabel", True),
                  "model": {k: cfg["model"][k] for k in ("model", "d_model", "n_layers", "n_heads") if k in cfg["model"]},
                  "curriculum": {**{k: cfg["model"].get(k) for k in ("c_thought", "max_latent_stage", "first_stage_epochs", "epochs_per_stage",
                                                                      "use_markers", "uniform_prob", "reset_optimizer", "lr")}, **MODES[mode]["model"]},
                  "epochs": MODES[mode]["trainer"].get("max_epochs", cfg["trainer"].get("max_epochs")), "batch_size": cfg["data"].get("batch_size"),
                  "seeds": list(range(a.seeds)), "config": str(CONFIG.relative_to(ROOT)), "workers": a.workers,
                  "machine": machine_info(threads_per_run=1),
                  "wall_s": None, "runs_reused": len(jobs) - len(todo),
                  "train_s_total": round(sum(r["train_s"] for r in runs) + mix_run["train_s"], 1),
                  "train_cpu_s_total": round(sum(r.get("train_cpu_s") or 0 for r in runs) + (mix_run.get("train_cpu_s") or 0), 1)},
        "arms": arms_sum,
        "verdict": v,
        "premise": premise(arms_sum),
        "positive_control": POSITIVE_CONTROL,
        "notes": notes(arms_sum, det, steps, gen, mode),
        "comparisons": det,                          # the numbers the verdict rule compared
        "timing": {"train_step": steps, "generation": gen},
        "latent_search": search,
    }
    res["setup"]["wall_s"] = round(time.time() - t_start, 1)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    write_results("coconut", res, markdown(res), out)
    plot(res, runs, out / "coconut.png")
    print(f"verdict: {v}; wrote {out / 'coconut.json'} ({res['setup']['wall_s']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
