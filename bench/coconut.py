"""Benchmark: Coconut and every variant of the paper's Table 1 on a positive control (pointer chasing), trained from scratch on CPU.

The claim under test (Hao et al. 2024, Table 1 and Section 4): continuous thoughts trained with the multi-stage curriculum
let a model solve a task that needs more serial steps than it can take in one forward pass -- Coconut far above No-CoT
and close to CoT -- while the same thoughts without the curriculum ("w/o curriculum") stay at No-CoT's level.

The task is the positive control of issue 19 (`configs/coconut/control.yaml`, `coconut.data.make_pointer_chase`): random
12-node functional graphs (one successor per node, one token per edge, node names re-drawn every epoch); which of two
candidates is reached from the start node after exactly 2 hops? The wrong candidate ends another 2-step chain. The model
is a 1-layer GPT-2 (d=64) trained from scratch: one layer follows one pointer per position, so it cannot compose 2 hops in
one pass (No-CoT must fail: the premise), while one hop per written step (CoT) or per continuous thought (Coconut) can.

  no_cot                 question -> answer
  cot                    question -> 2 steps (the nodes of the walk) -> answer
  pause                  question -> 2 learned <pause> tokens -> answer (no curriculum)
  coconut                the curriculum: stage k replaces the first k steps by k continuous thoughts (c=1)
  coconut_no_curriculum  the final stage (2 thoughts, no steps) from the first epoch
  no_thought             the same curriculum with the removed steps simply dropped (no thoughts)
  pause_as_thought       the same curriculum with a learned <pause> token in place of each thought
(iCoT, Deng et al. 2024, is not implemented in latent_lm and has no arm.)

Per arm and seed: accuracy on 500 held-out graphs (greedy, the paper's answer check) and tokens per answer (decoded tokens
+ continuous thoughts, the paper's count; EOS not counted); 3 seeds; every arm the same number of optimizer steps.

Verdict rule (stated before the numbers): with "A beats B" = A's mean accuracy exceeds B's by more than two standard errors
of the difference and by at least 10 points: "reproduced" if Coconut beats No-CoT, Coconut beats w/o curriculum, and
Coconut's accuracy is at least CoT's minus 5 points; "partial" if Coconut beats No-CoT but not all of the rest holds;
"not reproduced" otherwise.
Premise: No-CoT fails on the control -- its mean accuracy is at most 75% (chance 50%) while CoT's is at least 90%.
Positive control: shows if Coconut's mean accuracy is at least 90% and Coconut beats No-CoT.

Also in the same run (one thread): the training step of the cached multi-pass forward against the naive reference,
generation throughput (batched cached vs batch-1 vs official-style uncached; outputs checked identical), and the
latent-search analysis (`coconut.analysis`) of a Coconut control model trained with stage mixing (uniform_prob 0.3).
The ProsQA setting with natural-language steps (issue 19, item 2) is summarised from the data (tokens per answer of each
format); its trained arms do not fit this CPU budget (see the notes).

Run: python bench/coconut.py --quick   (writes bench/results/coconut.json, coconut.md, coconut.png, coconut_search/ through
bench/_common.py; finished runs are cached under --work DIR and reused when the command is rerun with the same --work)
"""
from __future__ import annotations
import argparse, json, math, statistics, subprocess, sys, tempfile, time
from pathlib import Path

from _common import ROOT, bench_env, machine_info, arm_stats, write_results
bench_env()                                         # before torch / lightning / transformers are imported

import torch

ARMS = {"no_cot": "no_cot", "cot": "cot", "pause": "pause", "coconut": "coconut", "coconut_no_curriculum": "no_curriculum",
        "no_thought": "no_thought", "pause_as_thought": "pause_as_thought"}
# the model the latent-search analysis reads: Coconut trained with stage mixing (uniform_prob 0.3, the paper's analysis
# setting), so that it still writes language steps when the end of thought is forced early; not one of the compared arms
ANALYSIS_ARM, ANALYSIS_MIX = "coconut_mix03", 0.3
CONFIG = ROOT / "configs" / "coconut" / "control.yaml"
N_TEST, TEST_SEED = 500, 7_654_321
# quick: control.yaml as it is (1,000 steps of 64 graphs: stage 0 for 300 steps, 200 per latent stage, 300 in the final
# stage); full: stage 0 long enough for CoT to converge before the first thought replaces a step (1,000 steps), 400 per
# latent stage and 500 in the final stage (2,300 steps).
MODES = {"quick": dict(model={}, data={}, trainer={}),
         "full": dict(model=dict(first_stage_epochs=20, epochs_per_stage=8), data={}, trainer=dict(max_epochs=46)),
         "smoke": dict(model=dict(first_stage_epochs=1, epochs_per_stage=1), data=dict(n_train=128, n_val=32), trainer=dict(max_epochs=5))}
BETTER_BY = 0.10                                    # "beats": > 2 s.e. of the difference and at least 10 points


def config() -> dict:
    "configs/coconut/control.yaml as `latent-lm coconut fit` reads it (LightningCLI's parser, defaults filled in)."
    from latent_lm.coconut.train import resolve_config
    return resolve_config(CONFIG)


def test_records(task_kwargs: dict) -> list[dict]:
    from latent_lm.coconut.data import make_pointer_chase, load_coconut_json
    return load_coconut_json(make_pointer_chase(N_TEST, seed=TEST_SEED, **task_kwargs))


# ------------------------------------------------------------------------------------------------------------- one run
def run_one(arm: str, seed: int, mode: str, out: Path) -> dict:
    "Train one arm with one seed, evaluate on the held-out graphs; returns the record written to `out/result.json`."
    torch.set_num_threads(1)
    import pandas as pd
    from latent_lm.coconut.train import fit_coconut
    variant = {**ARMS, ANALYSIS_ARM: "coconut"}[arm]
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
            curve = [{"epoch": int(e), "val_acc": float(a)} for e, a in zip(v["epoch"], v["val/acc"])]
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
    res["mode"] = mode                               # a work folder is reused only by a run of the same mode
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
    from latent_lm.coconut.data import make_pointer_chase, make_prosqa, symbolic_vocab, record_words
    from latent_lm.coconut.model import naive_forward
    cfg = config()
    out = {}
    for name, n_th, batch, recs_fn, words_fn in [
        ("pointer_chase", 3, 64, lambda: make_pointer_chase(64, seed=1, **cfg["data"]["task_kwargs"]), lambda r: symbolic_vocab(12)),
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
        m = CoconutModule(**{**cfg["model"], "save_hf": False}).build(words=symbolic_vocab(12))
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
    "Frontier values and logit lens (coconut.analysis) of the control Coconut model trained with stage mixing, and the k-sweep."
    torch.set_num_threads(1)
    if not (model_dir / "coconut.json").exists(): return None
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from latent_lm.coconut.train import load_coconut
    from latent_lm.coconut.analysis import latent_search, reasoning_breakdown, plot_reasoning
    cfg = config()
    recs = test_records(cfg["data"]["task_kwargs"])[:300]
    lc = load_coconut(model_dir)
    res = latent_search(lc, recs, out_dir=out)
    sweep = {}
    K = lc.curriculum.max_latent_stage * lc.curriculum.c_thought
    for k in range(K + 1):                      # the paper's k-sweep: force the end of thought after k thoughts
        ans = lc.answer(recs, n_thoughts=k, max_new_tokens=8)
        sweep[f"k={k}"] = {"acc": statistics.mean(float(x["correct"]) for x in ans), **reasoning_breakdown(recs, [x["text"] for x in ans], k)}
    ax = plot_reasoning(sweep, title="control model with stage mixing: reasoning class with the end of thought forced after k thoughts")
    for i, v in enumerate(sweep.values()): ax.text(i, 1.01, f"acc {v['acc']:.2f}", ha="center", fontsize=7)
    ax.figure.savefig(out / "k_sweep_reasoning.png", dpi=110, bbox_inches="tight"); plt.close(ax.figure)
    return {"n": len(recs), "uniform_prob": ANALYSIS_MIX, "summary": {str(k): v for k, v in res["summary"].items()},
            "k_sweep": sweep, "figures": [str(Path(f).relative_to(out.parent)) for f in res["figures"]] + ["coconut_search/k_sweep_reasoning.png"]}


def prosqa_language_format(n: int = 300) -> dict:
    "Tokens per answer of each format on natural-language ProsQA (make_prosqa, word tokens), counted from the data as the paper counts them."
    from latent_lm.coconut.data import make_prosqa, word_tokenizer
    from latent_lm.coconut.train import encode_record
    recs = make_prosqa(n, seed=TEST_SEED)
    tok = word_tokenizer(records=recs)
    enc = [encode_record(tok, r) for r in recs]
    K = 6                                                     # the paper's thoughts at inference (max_latent_stage 6, c 1)
    ans = [len(e["answer"]) - 1 for e in enc]                 # "### Tom is a lempus." without EOS
    cot = [sum(len(s) for s in e["steps"]) + a for e, a in zip(enc, ans)]
    return {"n": n, "tokenizer": "word-level (one token per word; GPT-2 BPE gives ~1.6x more)", "steps_mean": statistics.mean(e["n_steps"] for e in enc),
            "tokens_per_step_mean": statistics.mean(len(s) for e in enc for s in e["steps"]),
            "tokens_per_answer": {"no_cot": statistics.mean(ans), "cot": statistics.mean(cot), "coconut": K + statistics.mean(ans),
                                  "pause_as_thought": statistics.mean(ans)},
            "paper_gpt2_bpe": {"no_cot": 8.2, "cot": 49.4, "coconut": 14.2}}


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
    "Does arm `a` beat arm `b` by > 2 standard errors of the difference and >= BETTER_BY? Returns (win, diff, 2*se)."
    A, B = arms[a], arms[b]
    se = math.sqrt(A["acc_std"] ** 2 / len(A["acc_per_seed"]) + B["acc_std"] ** 2 / len(B["acc_per_seed"]))
    d = A["acc"] - B["acc"]
    return (d > 2 * se and d >= BETTER_BY), d, 2 * se


def verdict(arms: dict) -> tuple[str, dict]:
    w_no, d_no, m_no = beats(arms, "coconut", "no_cot")
    w_nc, d_nc, m_nc = (beats(arms, "coconut", "coconut_no_curriculum") if "coconut_no_curriculum" in arms else (False, None, None))
    near_cot = arms["coconut"]["acc"] >= arms["cot"]["acc"] - 0.05
    enough = all(len(arms[k]["seeds"]) >= 3 for k in ("coconut", "no_cot", "cot", "coconut_no_curriculum") if k in arms)
    v = "reproduced" if (w_no and w_nc and near_cot and enough) else "partial" if w_no else "not reproduced"
    return v, {"coconut_minus_no_cot": d_no, "margin_no_cot": m_no, "beats_no_cot": w_no, "coconut_minus_no_curriculum": d_nc,
               "margin_no_curriculum": m_nc, "beats_no_curriculum": w_nc, "coconut_minus_cot": arms["coconut"]["acc"] - arms["cot"]["acc"],
               "within_5_points_of_cot": near_cot, "three_seeds_each": enough}


def premise(arms: dict) -> dict:
    n, c = arms["no_cot"]["acc"], arms["cot"]["acc"]
    return {"what": "the control needs more serial steps than the 1-layer model takes in one pass: No-CoT fails (mean accuracy at most "
                    "75%, chance 50%) while CoT, which writes one hop per step, succeeds (at least 90%)",
            "numbers": {"no_cot_acc": n, "no_cot_acc_std": arms["no_cot"]["acc_std"], "cot_acc": c, "cot_acc_std": arms["cot"]["acc_std"]},
            "holds": bool(n <= 0.75 and c >= 0.90)}


def positive_control(arms: dict, det: dict) -> dict:
    c = arms["coconut"]["acc"]
    return {"what": "on the control, continuous thoughts (one per hop) must let the 1-layer model do what it cannot do in one pass: "
                    "Coconut's mean accuracy at least 90% and Coconut beats No-CoT (> 2 s.e. of the difference and at least 10 points)",
            "numbers": {"coconut_acc": c, "coconut_acc_std": arms["coconut"]["acc_std"], "no_cot_acc": arms["no_cot"]["acc"],
                        "coconut_minus_no_cot": det["coconut_minus_no_cot"], "two_se": det["margin_no_cot"]},
            "shows": bool(c >= 0.90 and det["beats_no_cot"])}


# ------------------------------------------------------------------------------------------------------------- report
def notes(arms: dict, det: dict, steps: dict, gen: dict, lang: dict, mode: str) -> str:
    f = lambda k: f"{arms[k]['acc']:.1%} ± {arms[k]['acc_std']:.1%}" if k in arms else "–"
    c, t = arms["coconut"], arms["cot"]
    L = lang["tokens_per_answer"]
    lines = [
        f"Accuracy on {N_TEST} held-out 2-hop pointer-chasing graphs (binary choice, chance 50%), mean ± std over seeds: "
        + ", ".join(f"{k} {f(k)}" for k in arms) + ".",
        "Share of answers naming one of the two options: " + ", ".join(f"{k} {a['option_rate']:.0%}" for k, a in arms.items()) + ".",
        f"Coconut − No-CoT = {det['coconut_minus_no_cot']:+.1%} (2 s.e. {det['margin_no_cot']:.1%}); Coconut − w/o curriculum = "
        + (f"{det['coconut_minus_no_curriculum']:+.1%} (2 s.e. {det['margin_no_curriculum']:.1%})" if det["coconut_minus_no_curriculum"] is not None else "–")
        + f"; Coconut − CoT = {det['coconut_minus_cot']:+.1%}.",
        f"Tokens per answer (thoughts + decoded tokens): Coconut {c['tokens_per_answer']:.2f}, CoT {t['tokens_per_answer']:.2f}. Each step of "
        "the control is one node token and c=1, so a thought replaces exactly one token: the control tests whether thoughts carry the "
        "serial computation, not the token saving.",
        f"Token saving on natural-language ProsQA (counted from the data, {lang['n']} generated graphs, {lang['tokenizer']}): a step is "
        f"{lang['tokens_per_step_mean']:.1f} tokens and there are {lang['steps_mean']:.1f} steps, so CoT writes {L['cot']:.1f} tokens per answer, "
        f"No-CoT {L['no_cot']:.1f}, Coconut with the paper's 6 thoughts {L['coconut']:.1f} (paper, GPT-2 BPE: 49.4 / 8.2 / 14.2). Trained "
        "language-step ProsQA arms (issue 19, item 2) were not run: on this shared 2-core machine a single CoT run on ~150-token "
        "ProsQA sequences long enough to learn the task takes hours; a GPU run of configs/coconut/paper.yaml (GPT-2 124M, 17.9k graphs, "
        "50 epochs) or a from-scratch d=256-768 model for ~50k steps is the scale at which CoT learns ProsQA well above chance and the "
        "accuracy ordering and the token ratio can be measured together.",
        f"Cost: a Coconut training step with {steps['pointer_chase']['thoughts']} thoughts takes {steps['pointer_chase']['cached_over_no_thoughts']:.1f}x "
        f"a plain step here; the naive recompute-the-prefix reference takes {steps['pointer_chase']['naive_over_cached']:.2f}x the cached "
        f"multi-pass forward here and {steps['prosqa_text']['naive_over_cached']:.2f}x on natural-language ProsQA "
        f"({steps['prosqa_text']['seq_len']} tokens, {steps['prosqa_text']['thoughts']} thoughts). Batched cached generation answers "
        f"{gen['batched_over_batch1']:.1f}x as many questions per second as batch-1 cached decoding and {gen['batched_over_naive']:.1f}x as "
        f"many as the official-style batch-1 uncached decoding (outputs identical: {gen['identical_outputs']}).",
    ]
    if mode == "quick":
        lines.append("This is the --quick run: configs/coconut/control.yaml as it is (1,000 optimizer steps of 64 graphs per arm: stage 0 "
                     "300 steps, 200 per latent stage, 300 in the final stage); `python bench/coconut.py` gives stage 0 1,000 steps so that CoT "
                     "converges before the first thought replaces a step, then 400 per latent stage and 500 in the final stage (2,300 steps).")
    return "\n\n".join(lines)


def markdown(res: dict) -> str:
    A = res["arms"]
    rows = ["| arm | accuracy | per seed | answers an option | tokens / answer | decoded tokens | steps | train s (CPU s) |",
            "|---|---|---|---|---|---|---|---|"]
    for k, a in A.items():
        rows.append(f"| {k} | {a['acc']:.1%} ± {a['acc_std']:.1%} | {', '.join(f'{x:.1%}' for x in a['acc_per_seed'])} | "
                    f"{a['option_rate']:.1%} | {a['tokens_per_answer']:.2f} | {a['decoded_tokens']:.2f} | {a['steps']} | "
                    f"{a['train_s']:.0f} ({a['train_cpu_s'] or 0:.0f}) |")
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
    lang = res["prosqa_language_format"]
    lrows = ["| format | tokens per answer (here, word tokens) | paper (GPT-2 BPE) |", "|---|---|---|"]
    for k, v in lang["tokens_per_answer"].items():
        lrows.append(f"| {k} | {v:.1f} | {lang['paper_gpt2_bpe'].get(k, '–')} |")
    P, PC = res["premise"], res["positive_control"]
    su = res["setup"]
    return (f"# Coconut: every Table-1 variant on the pointer-chasing control ({su['mode']})\n\n**Claim.** {res['claim']}\n\n"
            f"**Verdict: {res['verdict']}.**\n\nCommand: `{res['command']}`\n\n"
            f"**Premise** ({P['what']}): {'holds' if P['holds'] else 'does not hold'}; No-CoT {P['numbers']['no_cot_acc']:.1%}, "
            f"CoT {P['numbers']['cot_acc']:.1%}.\n\n"
            f"**Positive control** ({PC['what']}): {'shows' if PC['shows'] else 'does not show'}; Coconut {PC['numbers']['coconut_acc']:.1%} vs "
            f"No-CoT {PC['numbers']['no_cot_acc']:.1%}.\n\n"
            f"Setup: {su['task']} {su['task_kwargs']}, {su['n_train']} training graphs re-labelled every epoch, {su['model']}, "
            f"{su['epochs']} epochs of batch {su['batch_size']}, curriculum {su['curriculum']}; one thread per run, {su['workers']} runs in "
            f"parallel on a machine shared with other jobs. Training took {su['train_cpu_s_total']:.0f} CPU seconds in all "
            f"({su['train_s_total']:.0f} s of wall time); the whole command {su['wall_s']:.0f} s.\n\n"
            f"## Accuracy and tokens ({len(next(iter(A.values()))['seeds'])} seeds, {N_TEST} test graphs)\n\n" + "\n".join(rows)
            + "\n\n## What the answers look like (the paper's reasoning classes, `coconut.analysis.classify_reasoning`, mean over seeds)\n\n"
            + "\n".join(rrows)
            + "\n\n## ProsQA with natural-language steps: tokens per answer of each format (from the data; no trained arms)\n\n" + "\n".join(lrows)
            + "\n\n## Training step (one thread)\n\n" + "\n".join(trows)
            + f"\n\n## Generation throughput ({g['model']} model, {g['thoughts_per_answer']:.0f} thoughts then {g['max_new_tokens']} tokens per answer)\n\n" + grow
            + search_md(res.get("latent_search"))
            + "\n\n## Notes\n\n" + res["notes"] + "\n\n![](coconut.png)\n")


def search_md(s: dict | None) -> str:
    if not s: return ""
    rows = ["| thoughts k | cases | frontier size | value of the frontier node(s) | top-1 | value, nodes that reach the target | value, other nodes |",
            "|---|---|---|---|---|---|---|"]
    f = lambda x: "–" if x is None else f"{x:.3f}"
    for k, v in s["summary"].items():
        rows.append(f"| {k} | {v['cases']} | {v['frontier_size']:.2f} | {f(v['frontier_mass'])} | {f(v['top1'])} | "
                    f"{f(v['value_correct'])} | {f(v['value_incorrect'])} |")
    from latent_lm.coconut.analysis import REASONING_CLASSES
    sw = ["| k | accuracy | " + " | ".join(REASONING_CLASSES) + " |", "|---|---|" + "---|" * len(REASONING_CLASSES)]
    for k, v in s.get("k_sweep", {}).items():
        sw.append(f"| {k} | {v['acc']:.1%} | " + " | ".join(f"{v[c]:.1%}" for c in REASONING_CLASSES) + " |")
    who = (f"Coconut trained on the control like the `coconut` arm (seed 0) but with stage mixing (uniform_prob {s['uniform_prob']}, the "
           "paper's analysis setting), so that it still writes the walk in language when the end of thought is forced early"
           if s.get("model") == ANALYSIS_ARM else "the `coconut` arm's seed-0 model (trained without stage mixing: the stage-mixing model did not "
           "fit the budget, so after an early end of thought this model need not write language steps, and the k-sweep below is only "
           "meaningful at the final k)")
    return (f"\n\n## Latent search on the control (`coconut.analysis`, {s['n']} test graphs)\n\n"
            f"The analysed model is {who}; its final-stage accuracy is {s.get('model_accuracy', float('nan')):.1%}. After k thoughts the next token is read as the next "
            "node (depth k+1) and a node's value is its probability. In a functional graph the frontier at each depth is a single node, so "
            "the parallelism picture is trivial here (top-1 = all the mass); what the control can show is whether the thought after k hops "
            "already holds the node k+1 hops away.\n\n" + "\n".join(rows)
            + "\n\nForcing the end of thought after k thoughts (the paper's k-sweep):\n\n" + "\n".join(sw) + "\n\n"
            + " ".join(f"![]({p})" for p in s["figures"]))


def plot(res: dict, runs: list[dict], path: Path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    A = res["arms"]; names = list(A)
    fig, ax = plt.subplots(1, 4, figsize=(19, 3.8))
    x = range(len(names))
    ax[0].bar(x, [A[k]["acc"] for k in names], yerr=[A[k]["acc_std"] for k in names], color=[f"C{i}" for i in x], alpha=.7, capsize=3)
    for i, k in enumerate(names): ax[0].scatter([i] * len(A[k]["acc_per_seed"]), A[k]["acc_per_seed"], color="k", s=10, zorder=3)
    ax[0].axhline(0.5, color="0.5", ls=":", lw=1); ax[0].set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
    ax[0].set_ylabel("test accuracy"); ax[0].set_ylim(0, 1.05); ax[0].set_title("2-hop pointer chasing (dots: seeds; dotted: chance)", fontsize=9)
    ax[1].bar(x, [A[k]["tokens_per_answer"] for k in names], color=[f"C{i}" for i in x], alpha=.7)
    ax[1].bar(x, [A[k]["decoded_tokens"] for k in names], color="none", edgecolor="k", hatch="//", label="decoded")
    ax[1].set_xticks(list(x), names, rotation=30, ha="right", fontsize=8); ax[1].set_ylabel("tokens per answer")
    ax[1].set_title("tokens per answer (hatched: decoded part)", fontsize=9)
    for i, k in enumerate(names):
        cs = [r["val_curve"] for r in runs if r["arm"] == k and r["val_curve"]]
        if not cs: continue
        n = min(len(c) for c in cs)
        ax[2].plot([c["epoch"] for c in cs[0][:n]], [statistics.mean(c[j]["val_acc"] for c in cs) for j in range(n)], "o-", ms=3, color=f"C{i}", label=k)
    ax[2].set_xlabel("epoch"); ax[2].set_ylabel("val accuracy (stage's own thoughts)"); ax[2].legend(fontsize=7); ax[2].set_ylim(0, 1.05)
    ax[2].set_title("validation during training (mean over seeds)", fontsize=9)
    if all(A[k].get("reasoning") for k in names):
        from latent_lm.coconut.analysis import plot_reasoning
        plot_reasoning({k: A[k]["reasoning"] for k in names}, ax=ax[3], title="reasoning classes (paper's metric)")
    fig.suptitle(f"Coconut benchmark (positive control): verdict {res['verdict']}", fontsize=10); fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight"); plt.close(fig)


# ------------------------------------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="control.yaml as it is (1,000 steps per arm)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="training runs in parallel (one thread each)")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated; available: {', '.join(ARMS)}")
    ap.add_argument("--timing-reps", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary folder); finished runs are reused")
    ap.add_argument("--deadline", default=None, help="HH:MM (UTC): stop training at this time and report the runs that finished")
    ap.add_argument("--note", default="", help="a sentence added to the notes (e.g. how the runs were scheduled)")
    ap.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--_mode", default="quick", help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._worker:                                   # a worker process: claim the next unclaimed job (mkdir is atomic), run it, repeat
        work, jobs = Path(a._worker[0]), a._worker[1:]
        for job in jobs:
            arm, seed = job.rsplit(":", 1); d = work / f"{arm}_s{seed}"
            if (d / "result.json").exists(): continue
            try: (work / f"{arm}_s{seed}.claim").mkdir()
            except FileExistsError: continue
            d.mkdir(parents=True, exist_ok=True)
            run_one(arm, int(seed), a._mode, d)
            print(f"done {job}", flush=True)
        return 0
    mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    global N_TEST
    if a.smoke: N_TEST = 40
    arms = [x for x in a.arms.split(",") if x]
    for x in arms:
        if x not in ARMS: ap.error(f"unknown arm {x!r}")
    for req in ("coconut", "cot", "no_cot"):
        if req not in arms: ap.error(f"the verdict needs the arm {req!r}")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="coconut_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    deadline = None
    if a.deadline:                                  # HH:MM UTC: stop training there and report what finished
        import datetime as dt
        now = dt.datetime.now(dt.timezone.utc); hh, mm = map(int, a.deadline.split(":"))
        end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        deadline = t_start + (end - now).total_seconds()
    # the premise and the positive control first (No-CoT, Coconut, CoT, every seed), then w/o curriculum and pause as thought,
    # the analysis model, then the remaining arms
    order = ["no_cot", "coconut", "cot"]
    jobs = [(arm, s) for s in range(a.seeds) for arm in order if arm in arms]
    jobs += [(arm, s) for arm in ("coconut_no_curriculum", "pause_as_thought") if arm in arms for s in range(a.seeds)]
    jobs += [(ANALYSIS_ARM, 0)]
    jobs += [(arm, s) for arm in arms if arm not in order + ["coconut_no_curriculum", "pause_as_thought"] for s in range(a.seeds)]
    def done(j):
        f = work / f"{j[0]}_s{j[1]}" / "result.json"
        if not f.exists(): return False
        made = json.loads(f.read_text()).get("mode")
        if made != mode: sys.exit(f"{f} was made by a '{made}' run, not '{mode}': use another --work folder for this mode.")
        return True
    todo = [j for j in jobs if not done(j)]
    print(f"{len(jobs)} runs ({len(jobs) - len(todo)} already done) in {work}", flush=True)
    procs, seen, stopped = [], set(), False
    if a.workers > 0:
        for j in todo:                              # claims of runs a killed earlier command left unfinished
            c = work / f"{j[0]}_s{j[1]}.claim"
            if c.exists(): c.rmdir()
        for i in range(min(a.workers, len(todo))):  # every worker walks the same ordered list, taking unclaimed jobs
            log = open(work / f"worker{i}.log", "w")
            procs.append(subprocess.Popen([sys.executable, __file__, "--_mode", mode, "--_worker", str(work), *[f"{x}:{y}" for x, y in todo]],
                                          stdout=log, stderr=subprocess.STDOUT))
    # --workers 0: start nothing; collect the runs that workers started elsewhere (in --work) finish, until the deadline
    started = lambda: [j for j in todo if (work / f"{j[0]}_s{j[1]}").exists() and not done(j)]
    while True:
        time.sleep(3)
        for j in todo:
            if j not in seen and done(j):
                seen.add(j); r = json.loads((work / f"{j[0]}_s{j[1]}" / "result.json").read_text())
                print(f"[{time.time() - t_start:6.0f}s] {j[0]:>22} seed {j[1]}: acc {r['acc']:.3f}, tokens {r['tokens_per_answer']:.2f}, "
                      f"train {r['train_s']:.0f}s", flush=True)
        if procs and all(p.poll() is not None for p in procs): break
        if not procs and not started(): break
        if deadline is not None and time.time() > deadline and not stopped:
            print(f"deadline {a.deadline} UTC reached: stopping the workers", flush=True)
            for p in procs: p.kill()
            for p in procs: p.wait()
            stopped = True
            break
    if not stopped and any(p.returncode != 0 for p in procs):
        print(f"a worker failed; see {work}/worker*.log", flush=True); return 1
    finished = [j for j in jobs if done(j)]
    for req in ("no_cot", "coconut", "cot"):
        if not any(j[0] == req for j in finished): print(f"no finished run of {req}; nothing to report", flush=True); return 1
    not_run = [j for j in jobs if j not in finished]
    runs = [json.loads((work / f"{arm}_s{s}" / "result.json").read_text()) for arm, s in finished if arm != ANALYSIS_ARM]
    mix_run = json.loads((work / f"{ANALYSIS_ARM}_s0" / "result.json").read_text()) if (ANALYSIS_ARM, 0) in finished else None
    print("timing ...", flush=True)
    steps = step_timing(a.timing_reps)
    gen = generation_timing(a.timing_reps, work / "coconut_s0" / "hf_model")
    search = None
    src_arm, src_run = (ANALYSIS_ARM, mix_run) if mix_run is not None else ("coconut", next((r for r in runs if r["arm"] == "coconut" and r["seed"] == 0), None))
    if src_run is not None:
        print(f"latent-search analysis ({src_arm}, seed 0) ...", flush=True)
        search = search_analysis(work / f"{src_arm}_s0" / "hf_model", Path(a.out) / "coconut_search")
        if search: search.update(model_accuracy=src_run["acc"], model=src_arm, uniform_prob=ANALYSIS_MIX if src_arm == ANALYSIS_ARM else 0.0)
    lang = prosqa_language_format()
    arms_sum = summarise(runs)
    from latent_lm.coconut.analysis import reasoning_breakdown, REASONING_CLASSES
    trecs = test_records(config()["data"]["task_kwargs"])[:N_TEST]
    for arm, summ in arms_sum.items():              # the paper's reasoning classes, averaged over seeds
        bds = [reasoning_breakdown(trecs, r["texts"], r["n_thoughts"]) for r in runs if r["arm"] == arm and "texts" in r]
        summ["reasoning"] = {c: statistics.mean(b[c] for b in bds) for c in REASONING_CLASSES} if bds else None
    arms_sum = {k: arms_sum[k] for k in ARMS if k in arms_sum}
    v, det = verdict(arms_sum)
    cfg = config()
    ov = MODES[mode]
    res = {
        "claim": "Continuous thoughts trained with the curriculum let a model solve a task that needs more serial steps than one forward "
                 "pass -- Coconut far above No-CoT and close to CoT, while the same thoughts without the curriculum stay at No-CoT's level "
                 "(Hao et al. 2024, Table 1: w/o curriculum is at No-CoT's level on all three tasks). Tested on 2-hop pointer chasing with a "
                 "1-layer model. Rule: with 'A beats B' = A's mean accuracy exceeds B's by more than two standard errors of the difference "
                 "and at least 10 points, 'reproduced' if Coconut beats No-CoT, Coconut beats w/o curriculum, and Coconut's accuracy is at "
                 "least CoT's minus 5 points, each of these arms with at least 3 seeds; 'partial' if Coconut beats No-CoT but not all the rest "
                 "holds; 'not reproduced' otherwise.",
        "command": "python bench/coconut.py" + (" --smoke" if a.smoke else " --quick" if a.quick else "") + (f" --seeds {a.seeds}" if a.seeds != 3 else "")
                   + (f" --arms {a.arms}" if a.arms != ",".join(ARMS) else "") + (f" --workers {a.workers}" if a.workers != 2 else "")
                   + (f" --deadline {a.deadline}" if a.deadline else ""),
        "setup": {"mode": mode, "task": "2-hop pointer chasing (latent_lm.coconut.data.make_pointer_chase)", "task_kwargs": cfg["data"].get("task_kwargs"),
                  "n_train": ov["data"].get("n_train", cfg["data"].get("n_train")), "n_test": N_TEST, "test_seed": TEST_SEED,
                  "relabel_every_epoch": cfg["data"].get("relabel", True),
                  "model": {k: cfg["model"][k] for k in ("model", "d_model", "n_layers", "n_heads") if k in cfg["model"]},
                  "curriculum": {**{k: cfg["model"].get(k) for k in ("c_thought", "max_latent_stage", "first_stage_epochs", "epochs_per_stage",
                                                                      "use_markers", "uniform_prob", "reset_optimizer", "lr")}, **ov["model"]},
                  "epochs": ov["trainer"].get("max_epochs", cfg["trainer"].get("max_epochs")), "batch_size": cfg["data"].get("batch_size"),
                  "seeds": list(range(a.seeds)), "config": str(CONFIG.relative_to(ROOT)), "workers": a.workers,
                  "machine": machine_info(threads_per_run=1),
                  "wall_s": None, "runs_reused": len(jobs) - len(todo), "deadline_utc": a.deadline,
                  "runs_not_finished": [f"{x}_s{y}" for x, y in not_run],
                  "train_s_total": round(sum(r["train_s"] for r in runs) + (mix_run or {}).get("train_s", 0), 1),
                  "train_cpu_s_total": round(sum(r.get("train_cpu_s") or 0 for r in runs) + ((mix_run or {}).get("train_cpu_s") or 0), 1)},
        "arms": arms_sum,
        "verdict": v,
        "premise": premise(arms_sum),
        "positive_control": positive_control(arms_sum, det),
        "notes": notes(arms_sum, det, steps, gen, lang, mode),
        "comparisons": det,
        "prosqa_language_format": lang,
        "timing": {"train_step": steps, "generation": gen},
        "latent_search": search,
    }
    res["setup"]["wall_s"] = round(time.time() - t_start, 1)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    res["notes"] = notes(arms_sum, det, steps, gen, lang, mode)
    if not_run:
        res["notes"] += ("\n\nNot run or not finished before the deadline (" + str(a.deadline) + " UTC) on this shared machine, so not reported: "
                         + ", ".join(f"{x} seed {y}" for x, y in not_run) + ". Arms with fewer than 3 seeds: "
                         + (", ".join(f"{k} ({len(v['seeds'])})" for k, v in arms_sum.items() if len(v["seeds"]) < 3) or "none") + ".")
    if a.note: res["notes"] += "\n\n" + a.note
    write_results("coconut", res, markdown(res), out)
    plot(res, runs, out / "coconut.png")
    print(f"verdict: {v}; wrote {out / 'coconut.json'} ({res['setup']['wall_s']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
