"""Benchmark: latent_lm's Lightning preference step against TRL's DPOTrainer, and batched against one-at-a-time sampling.

What is measured, on the same from-scratch Llama-style model, data and batch:

1. Step-0 loss: our `PreferenceModule.compute_loss` and TRL's `DPOTrainer.compute_loss` on the same 8 pairs, with a
   reference model whose weights differ from the policy's (so the loss is not trivially log 2), for DPO (sigmoid),
   IPO and hinge. Also: the token ids and the reference log-probs of both pipelines.
2. Time per optimiser step: Lightning `Trainer.fit` with `PreferenceModule` against TRL's `DPOTrainer.train`, both with
   precomputed reference log-probs, AdamW at a constant learning rate, no logging backend, one thread. Rounds alternate
   which arm runs first; each round uses a fresh model (seed = round); the per-round figure is the median of the
   wall-clock intervals between consecutive step ends (first two steps dropped).
3. Peak memory: each arm trains in a fresh subprocess; the kernel's peak-RSS counter (VmHWM) is reset through
   /proc/self/clear_refs right before `fit`/`train`, and the figure is VmHWM at the end minus the RSS before.
4. Sampling throughput: `latent_lm.generate.HFGenerator` with batch_size=16 against batch_size=1 (one prompt at a
   time), same prompts and seed, tokens generated per second, alternating rounds.

Run: python bench/prefs.py --quick   (writes bench/results/prefs.json, prefs.md, prefs.png)
"""
from __future__ import annotations
import argparse, copy, json, logging, math, os, platform, random, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1"); os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LATENT_LM_QUIET", "1"); os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1"); os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore")
for _n in ("lightning.pytorch", "lightning.fabric", "transformers", "trl", "datasets"): logging.getLogger(_n).setLevel(logging.ERROR)

import torch

MODEL_KW = dict(vocab="bytes", d_model=128, n_layers=4, n_heads=4, max_len=512)
BATCH, BETA, LR = 8, 0.1, 1e-4

def bench_pairs(n: int, seed: int = 0) -> list[dict]:
    "Arithmetic preference pairs of realistic shape: a worked sum (chosen) against one with a slip (rejected), ~100 + ~70 bytes."
    rng, out = random.Random(seed), []
    for i in range(n):
        xs = [rng.randint(10, 99) for _ in range(4)]
        steps, acc = [], xs[0]
        for x in xs[1:]: steps.append(f"{acc}+{x}={acc + x}"); acc += x
        k = rng.randrange(len(steps)); bad = list(steps); wrong = acc + rng.choice([-10, -1, 1, 10])
        bad[k] = bad[k].rsplit("=", 1)[0] + f"={int(bad[k].rsplit('=', 1)[1]) + rng.choice([-1, 1])}"
        prompt = f"Question {i}: add the numbers {', '.join(map(str, xs))}. Show each step, then give the total on its own line."
        out.append({"prompt": prompt, "chosen": "; ".join(steps) + f"\nTotal: {acc}", "rejected": "; ".join(bad) + f"\nTotal: {wrong}"})
    return out

def threads():
    torch.set_num_threads(1)

# ---------------------------------------------------------------------------------------------------------------- TRL
def trl_trainer(model, tok, records, steps: int, loss_type: str = "sigmoid", ref_model=None, callbacks=None, seed: int = 0):
    import datasets
    from trl import DPOConfig, DPOTrainer
    datasets.disable_progress_bars()
    args = DPOConfig(output_dir=tempfile.mkdtemp(prefix="trl_bench_"), per_device_train_batch_size=BATCH, beta=BETA, loss_type=[loss_type],
                     precompute_ref_log_probs=True, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                     optim="adamw_torch", max_steps=steps, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
                     max_length=None, dataloader_num_workers=0, use_cpu=True, bf16=False, seed=seed)
    from transformers.trainer_callback import PrinterCallback
    tr = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=datasets.Dataset.from_list(records),
                    processing_class=tok, callbacks=callbacks)
    tr.remove_callback(PrinterCallback)                                # metrics are still computed every step, just not printed
    return tr

# ---------------------------------------------------------------------------------------------------------------- ours
def ours_setup(model, tok, records, ref_model=None, loss_type: str = "sigmoid", seed: int = 0):
    from latent_lm.prefs import PreferenceDataModule, PreferenceModule
    dm = PreferenceDataModule(records, tok, batch_size=BATCH, chat=False, seed=seed)
    dm.add_ref_logps(ref_model if ref_model is not None else model)          # the precompute stage, before training
    pm = PreferenceModule(model, beta=BETA, loss_type=loss_type, lr=LR, save_hf=False)
    return pm, dm

def ours_trainer(steps: int, callbacks=()):
    import lightning as L
    return L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tempfile.mkdtemp(prefix="ours_bench_"), callbacks=list(callbacks),
                     log_every_n_steps=1)

# ---------------------------------------------------------------------------------------------------------------- 1. step-0 loss
def step0_losses(seed: int) -> dict:
    from latent_lm.lm import tiny_lm
    from latent_lm.prefs import tokenize_preferences, collate_preferences
    policy, tok = tiny_lm(seed=seed, **MODEL_KW)
    ref, _ = tiny_lm(seed=seed + 1000, **MODEL_KW)
    records = bench_pairs(BATCH, seed)
    out = {}
    for lt in ("sigmoid", "ipo", "hinge"):
        tr = trl_trainer(copy.deepcopy(policy), tok, records, steps=1, loss_type=lt, ref_model=copy.deepcopy(ref), seed=seed)
        ds = tr.train_dataset
        batch = tr.data_collator([ds[i] for i in range(BATCH)])
        tr.model.train()
        with torch.no_grad(): trl_loss = tr.compute_loss(tr.model, batch).item()
        trl_m = {k: v[-1] for k, v in tr._metrics["train"].items()}
        pm, dm = ours_setup(copy.deepcopy(policy), tok, records, ref_model=ref, loss_type=lt, seed=seed)
        rows = dm.train_rows
        ids_equal = all(ds[i][k] == rows[i][k] for i in range(BATCH) for k in ("prompt_ids", "chosen_ids", "rejected_ids"))
        ref_diff = max(max(abs(ds[i]["ref_chosen_logps"] - rows[i]["ref_chosen_logps"]),
                           abs(ds[i]["ref_rejected_logps"] - rows[i]["ref_rejected_logps"])) for i in range(BATCH))
        pm.model.train()
        with torch.no_grad(): our_loss, m = pm.compute_loss(collate_preferences(rows, tok.pad_token_id))
        out[lt] = {"ours": our_loss.item(), "trl": trl_loss, "abs_diff": abs(our_loss.item() - trl_loss), "token_ids_equal": ids_equal,
                   "ref_logps_max_abs_diff": ref_diff,
                   "metrics_max_abs_diff": max(abs(m[k].item() - trl_m[k]) for k in
                                               ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"))}
        del tr
    return out

# ---------------------------------------------------------------------------------------------------------------- 2. time per step
class _StepClock:
    def __init__(self): self.t = []
    def tick(self): self.t.append(time.perf_counter())
    def per_step(self, drop: int = 2) -> list[float]:
        d = [b - a for a, b in zip(self.t, self.t[1:])]
        return d[drop:] if len(d) > drop + 2 else d

def time_ours(seed: int, steps: int, records) -> list[float]:
    import lightning as L
    from latent_lm.lm import tiny_lm
    model, tok = tiny_lm(seed=seed, **MODEL_KW)
    pm, dm = ours_setup(model, tok, records, seed=seed)
    clock = _StepClock()
    class CB(L.Callback):
        def on_train_batch_end(self, *a): clock.tick()
    ours_trainer(steps, [CB()]).fit(pm, dm)
    return clock.per_step()

def time_trl(seed: int, steps: int, records) -> list[float]:
    from transformers import TrainerCallback
    from latent_lm.lm import tiny_lm
    model, tok = tiny_lm(seed=seed, **MODEL_KW)
    clock = _StepClock()
    class CB(TrainerCallback):
        def on_step_end(self, *a, **k): clock.tick()
    tr = trl_trainer(model, tok, records, steps, callbacks=[CB()], seed=seed)
    tr.train()
    return clock.per_step()

# ---------------------------------------------------------------------------------------------------------------- 3. memory
def _rss_kb() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

def _hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"): return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")

def memory_arm(arm: str, seed: int, steps: int) -> dict:
    "Run in a fresh process: peak RSS above a baseline taken after the common imports and the model (MB)."
    threads()
    import lightning, trl, datasets, transformers                     # both arms import everything first: a common baseline
    from latent_lm.lm import tiny_lm
    from latent_lm import prefs
    records = bench_pairs(64, seed)
    model, tok = tiny_lm(seed=seed, **MODEL_KW)
    import gc; gc.collect()
    before = _rss_kb()
    Path("/proc/self/clear_refs").write_text("5")                    # reset the kernel's peak-RSS counter (VmHWM)
    reset_ok = _hwm_kb() <= before + 1024
    if arm == "ours":
        pm, dm = ours_setup(model, tok, records, seed=seed); ours_trainer(steps).fit(pm, dm)
    else:
        trl_trainer(model, tok, records, steps, seed=seed).train()
    return {"arm": arm, "seed": seed, "peak_rss_increase_mb": (_hwm_kb() - before) / 1024, "rss_before_mb": before / 1024, "hwm_reset": reset_ok}

def memory_one_step(arm: str, seed: int) -> dict:
    "Run in a fresh process: peak RSS of one forward+backward on the same 8 pairs, after a warm-up step (no trainer loop)."
    threads()
    import lightning, trl, datasets, transformers
    from latent_lm.lm import tiny_lm
    model, tok = tiny_lm(seed=seed, **MODEL_KW)
    records = bench_pairs(BATCH, seed)
    if arm == "ours_step":
        from latent_lm.prefs import collate_preferences
        pm, dm = ours_setup(model, tok, records, seed=seed)
        batch, net = collate_preferences(dm.train_rows, tok.pad_token_id), pm.model
        loss_fn = lambda: pm.compute_loss(batch)[0]
    else:
        tr = trl_trainer(model, tok, records, 1, seed=seed)
        batch, net = tr.data_collator([tr.train_dataset[i] for i in range(BATCH)]), tr.model
        loss_fn = lambda: tr.compute_loss(tr.model, batch)
    net.train()
    loss_fn().backward(); net.zero_grad(set_to_none=True)
    import gc; gc.collect()
    before = _rss_kb(); Path("/proc/self/clear_refs").write_text("5")
    loss_fn().backward()
    return {"arm": arm, "seed": seed, "peak_rss_increase_mb": (_hwm_kb() - before) / 1024, "rss_before_mb": before / 1024}

def run_memory(arm: str, seed: int, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--memory-arm", arm, "--seed", str(seed), "--steps", str(steps)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if p.returncode != 0: raise RuntimeError(f"memory run {arm} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])

# ---------------------------------------------------------------------------------------------------------------- 4. sampling
def time_sampling(gen, prompts, max_new_tokens: int, seed: int):
    t = time.perf_counter()
    out = gen.generate(prompts, n=1, temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed, chat=False)
    dt = time.perf_counter() - t
    toks = [c.num_tokens for cs in out for c in cs]
    return sum(toks) / dt, toks

# ---------------------------------------------------------------------------------------------------------------- main
def mean_std(xs):
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and steps (a few minutes on 2 cores)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--memory-arm", choices=["ours", "trl", "ours_step", "trl_step"]); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    if a.memory_arm:
        f = memory_one_step if a.memory_arm.endswith("_step") else memory_arm
        print(json.dumps(f(a.memory_arm, a.seed) if a.memory_arm.endswith("_step") else f(a.memory_arm, a.seed, a.steps))); return
    threads()
    rounds, steps, mem_reps, gen_rounds = (3, 10, 2, 3) if a.quick else (5, 20, 3, 5)
    n_prompts, max_new = (32, 32) if a.quick else (64, 64)
    seeds = list(range(rounds))
    t_start = time.time()
    import lightning, transformers, trl
    from latent_lm.lm import tiny_lm
    from latent_lm.generate import HFGenerator

    print("1/4 step-0 losses ...", flush=True)
    s0 = {s: step0_losses(s) for s in seeds}
    loss_types = ("sigmoid", "ipo", "hinge")
    max_diff = max(s0[s][lt]["abs_diff"] for s in seeds for lt in loss_types)
    ids_equal = all(s0[s][lt]["token_ids_equal"] for s in seeds for lt in loss_types)
    ref_diff = max(s0[s][lt]["ref_logps_max_abs_diff"] for s in seeds for lt in loss_types)
    met_diff = max(s0[s][lt]["metrics_max_abs_diff"] for s in seeds for lt in loss_types)
    loss_match = max_diff < 1e-4

    print("2/4 time per step (interleaved rounds) ...", flush=True)
    records = bench_pairs(64, 0)
    t_ours, t_trl, ratios = [], [], []
    for r in seeds:
        order = ("ours", "trl") if r % 2 == 0 else ("trl", "ours")
        res = {}
        for arm in order:
            res[arm] = statistics.median((time_ours if arm == "ours" else time_trl)(r, steps, records))
        t_ours.append(res["ours"] * 1e3); t_trl.append(res["trl"] * 1e3); ratios.append(res["ours"] / res["trl"])
        print(f"   round {r}: ours {res['ours'] * 1e3:.1f} ms, TRL {res['trl'] * 1e3:.1f} ms", flush=True)

    print("3/4 peak memory (fresh processes) ...", flush=True)
    mem = {"ours": [], "trl": [], "ours_step": [], "trl_step": []}
    for i in range(mem_reps):
        for arm in (("ours", "trl", "ours_step", "trl_step") if i % 2 == 0 else ("trl", "ours", "trl_step", "ours_step")):
            mem[arm].append(run_memory(arm, i, steps))
    hwm_reset = all(m["hwm_reset"] for k in ("ours", "trl") for m in mem[k])
    step_o = [m["peak_rss_increase_mb"] for m in mem["ours_step"]]; step_t = [m["peak_rss_increase_mb"] for m in mem["trl_step"]]

    print("4/4 sampling throughput ...", flush=True)
    model, tok = tiny_lm(seed=0, **MODEL_KW)
    prompts = [p["prompt"] for p in bench_pairs(n_prompts, 1)]
    g16, g1 = HFGenerator(model, tok, batch_size=16), HFGenerator(model, tok, batch_size=1)
    time_sampling(g16, prompts[:16], 4, 0)                              # warm-up
    tps16, tps1, same = [], [], True
    for r in range(gen_rounds):
        for name in (("b16", "b1") if r % 2 == 0 else ("b1", "b16")):
            tps, toks = time_sampling(g16 if name == "b16" else g1, prompts, max_new, seed=r)
            (tps16 if name == "b16" else tps1).append(tps)
            if name == "b16": toks16 = toks
            else: toks1 = toks
        same &= toks16 == toks1
    speedups = [a_ / b_ for a_, b_ in zip(tps16, tps1)]

    # ------------------------------------------------------------------------------------------------ results
    ratio_m, ratio_s = mean_std(ratios)
    speed_m, speed_s = mean_std(speedups)
    ok_time, ok_speed = ratio_m <= 1.5, speed_m >= 2.0
    verdict = "reproduced" if (loss_match and ok_time and ok_speed) else "partial" if loss_match else "not reproduced"
    mo, mt = [m["peak_rss_increase_mb"] for m in mem["ours"]], [m["peak_rss_increase_mb"] for m in mem["trl"]]
    arms = {
        "ours_lightning": {
            "step0_loss_sigmoid": statistics.fmean(s0[s]["sigmoid"]["ours"] for s in seeds),
            "step0_loss_ipo": statistics.fmean(s0[s]["ipo"]["ours"] for s in seeds),
            "step0_loss_hinge": statistics.fmean(s0[s]["hinge"]["ours"] for s in seeds),
            "step0_loss_abs_diff_vs_trl_max": max_diff, "step0_loss_match_1e-4": loss_match,
            "step_time_ms": mean_std(t_ours)[0], "step_time_ms_std": mean_std(t_ours)[1],
            "step_time_ratio_vs_trl": ratio_m, "step_time_ratio_vs_trl_std": ratio_s,
            "peak_rss_increase_mb": mean_std(mo)[0], "peak_rss_increase_mb_std": mean_std(mo)[1],
            "one_step_peak_rss_mb": mean_std(step_o)[0], "one_step_peak_rss_mb_std": mean_std(step_o)[1],
            "seeds": seeds},
        "trl_dpotrainer": {
            "step0_loss_sigmoid": statistics.fmean(s0[s]["sigmoid"]["trl"] for s in seeds),
            "step0_loss_ipo": statistics.fmean(s0[s]["ipo"]["trl"] for s in seeds),
            "step0_loss_hinge": statistics.fmean(s0[s]["hinge"]["trl"] for s in seeds),
            "step_time_ms": mean_std(t_trl)[0], "step_time_ms_std": mean_std(t_trl)[1],
            "peak_rss_increase_mb": mean_std(mt)[0], "peak_rss_increase_mb_std": mean_std(mt)[1],
            "one_step_peak_rss_mb": mean_std(step_t)[0], "one_step_peak_rss_mb_std": mean_std(step_t)[1],
            "seeds": seeds},
        "hf_generator_batch16": {"tokens_per_s": mean_std(tps16)[0], "tokens_per_s_std": mean_std(tps16)[1],
                                 "speedup_vs_batch1": speed_m, "speedup_vs_batch1_std": speed_s, "seeds": list(range(gen_rounds))},
        "hf_generator_batch1": {"tokens_per_s": mean_std(tps1)[0], "tokens_per_s_std": mean_std(tps1)[1], "seeds": list(range(gen_rounds))},
    }
    n_params = sum(p.numel() for p in model.parameters())
    setup = {
        "model": f"from-scratch LlamaForCausalLM via latent_lm.lm.tiny_lm({', '.join(f'{k}={v!r}' for k, v in MODEL_KW.items())}), "
                 f"{n_params / 1e6:.2f}M parameters, byte tokenizer (vocab {len(tok)})",
        "data": "bench_pairs: arithmetic preference pairs, prompt ~100 bytes, responses ~60-70 bytes, plain text (chat=False; "
                "TRL's standard format), EOS appended",
        "batch_pairs": BATCH, "beta": BETA, "lr": LR, "optimizer": "AdamW, constant lr, no weight decay (both arms)",
        "step0": {"pairs": BATCH, "reference": "a second tiny_lm with other weights (seed + 1000)", "loss_types": list(loss_types),
                  "per_seed": {str(s): s0[s] for s in seeds}, "token_ids_equal": ids_equal,
                  "ref_logps_max_abs_diff": ref_diff, "metrics_max_abs_diff": met_diff},
        "timing": {"rounds": rounds, "steps_per_round": steps, "statistic": "per round: median interval between consecutive "
                   "optimiser-step ends, first 2 dropped; rounds alternate which arm runs first; model seed = round",
                   "train_pairs": len(records), "ours_ms_per_round": t_ours, "trl_ms_per_round": t_trl, "ratio_per_round": ratios},
        "memory": {"what": "peak RSS of the whole arm (building its data module / trainer, precomputing the reference log-probs, "
                   "training) above a common baseline: each run is a fresh process that first imports torch, lightning, transformers, "
                   "trl and datasets and builds the model; then VmHWM is reset through /proc/self/clear_refs; figure = VmHWM at the "
                   "end minus RSS at the reset. No reference model is resident in either arm. one_step_peak_rss_mb: the same "
                   "counter around a single forward+backward on the same 8 pairs after a warm-up step, without a training loop",
                   "hwm_reset_worked": hwm_reset, "steps": steps, "runs": mem},
        "sampling": {"prompts": n_prompts, "max_new_tokens": max_new, "temperature": 1.0, "rounds": gen_rounds,
                     "same_samples_both_arms": same, "tokens_per_s_batch16": tps16, "tokens_per_s_batch1": tps1},
        "machine": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "lightning": lightning.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                    "python": platform.python_version(), "platform": platform.platform()},
        "wall_s": None,
    }
    claim = ("latent_lm's Lightning preference step reproduces TRL's DPOTrainer: the same step-0 loss (|diff| < 1e-4 for sigmoid, "
             "IPO and hinge on the same model, data and batch, with a reference that differs from the policy) at a time per step "
             "no more than 1.5x TRL's, and batched sampling (HFGenerator, batch 16) gives at least 2x the tokens/s of one prompt at "
             "a time. Verdict rule: 'reproduced' if all three hold; 'partial' if the losses match but a speed criterion fails; "
             "'not reproduced' if the losses differ.")
    mem_ratio, step_ratio = mean_std(mo)[0] / mean_std(mt)[0], mean_std(step_o)[0] / mean_std(step_t)[0]
    notes = (f"Step-0 losses agree to {max_diff:.1e} (token ids identical: {ids_equal}; reference log-probs agree to {ref_diff:.1e}; "
             f"TRL's reward/logp metrics agree to {met_diff:.1e}). Time per step: ours {ratio_m:.2f}x TRL's "
             f"({mean_std(t_ours)[0]:.1f} vs {mean_std(t_trl)[0]:.1f} ms). The two steps differ in how they score tokens: TRL's fused "
             f"LM head computes log-probs tile by tile without the full logits, plus extra per-step metrics (entropy, token "
             f"accuracy); ours takes the full float32 logits through latent_lm.lm.sequence_logprobs. "
             f"Memory: a single forward+backward peaks at {mean_std(step_o)[0]:.0f} MB (ours) vs {mean_std(step_t)[0]:.0f} MB (TRL) "
             f"({step_ratio:.2f}x), but over a whole run ours peaks at {mean_std(mo)[0]:.0f} MB vs {mean_std(mt)[0]:.0f} MB "
             f"({mem_ratio:.2f}x). In side experiments outside this run (torch profiler, d_model=256), the tensors allocated per "
             f"step were the same size for both, and in a plain PyTorch loop dropping the previous step's tensors before the next "
             f"forward cut our peak by about 20%: the extra memory comes from the loop around the step (first steps grow the heap "
             f"more), not from the loss computation. The cause is not pinned down yet and is worth a look before large runs. With a 259-token byte vocabulary the logits are tiny; with SmolLM2's 49k vocabulary the full logits would "
             f"dominate activation memory, and TRL's fused head would save much more. Batched sampling gives {speed_m:.1f}x the "
             f"tokens/s of batch 1 on one CPU thread (the same samples in both arms); on a GPU the gap grows, because a batch-1 "
             f"decode step is bound by kernel launches. Everything runs on CPU with one torch thread: a GPU changes the absolute "
             f"times, not which arms are compared.")
    setup["wall_s"] = round(time.time() - t_start, 1)
    res = {"claim": claim, "command": "python bench/prefs.py" + (" --quick" if a.quick else ""), "setup": setup, "arms": arms,
           "verdict": verdict, "notes": notes}
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    from latent_lm.core import atomic_write_json, atomic_write_text
    atomic_write_json(out / "prefs.json", res)
    atomic_write_text(out / "prefs.md", markdown(res))
    figure(res, out / "prefs.png")
    print(f"verdict: {verdict}; wrote {out / 'prefs.json'}, prefs.md, prefs.png in {setup['wall_s']} s")

def markdown(r) -> str:
    A, S = r["arms"], r["setup"]
    o, t, b16, b1 = A["ours_lightning"], A["trl_dpotrainer"], A["hf_generator_batch16"], A["hf_generator_batch1"]
    pm = lambda m, s, f="{:.1f}": f"{f.format(m)} ± {f.format(s)}"
    lines = [
        "# Preference step: latent_lm (Lightning) vs TRL DPOTrainer; batched sampling", "",
        f"**Claim.** {r['claim']}", "", f"**Verdict: {r['verdict']}.**", "", f"Command: `{r['command']}` ({S['wall_s']} s). {S['model']}; "
        f"batch {S['batch_pairs']} pairs; beta {S['beta']}; seeds {o['seeds']}.", "",
        "| metric | latent_lm (Lightning) | TRL DPOTrainer | ours / TRL |", "|---|---|---|---|",
        f"| step-0 loss, DPO (sigmoid) | {o['step0_loss_sigmoid']:.6f} | {t['step0_loss_sigmoid']:.6f} | max abs diff {o['step0_loss_abs_diff_vs_trl_max']:.1e} |",
        f"| step-0 loss, IPO | {o['step0_loss_ipo']:.6f} | {t['step0_loss_ipo']:.6f} | |",
        f"| step-0 loss, hinge | {o['step0_loss_hinge']:.6f} | {t['step0_loss_hinge']:.6f} | |",
        f"| time per step (ms) | {pm(o['step_time_ms'], o['step_time_ms_std'])} | {pm(t['step_time_ms'], t['step_time_ms_std'])} | "
        f"{pm(o['step_time_ratio_vs_trl'], o['step_time_ratio_vs_trl_std'], '{:.2f}')} |",
        f"| peak RSS of a {S['memory']['steps']}-step run above a common baseline (MB) | {pm(o['peak_rss_increase_mb'], o['peak_rss_increase_mb_std'])} | "
        f"{pm(t['peak_rss_increase_mb'], t['peak_rss_increase_mb_std'])} | {o['peak_rss_increase_mb'] / max(t['peak_rss_increase_mb'], 1e-9):.2f} |",
        f"| peak RSS of one forward+backward, no loop (MB) | {pm(o['one_step_peak_rss_mb'], o['one_step_peak_rss_mb_std'])} | "
        f"{pm(t['one_step_peak_rss_mb'], t['one_step_peak_rss_mb_std'])} | {o['one_step_peak_rss_mb'] / max(t['one_step_peak_rss_mb'], 1e-9):.2f} |",
        "", "| sampling (HFGenerator) | tokens/s | speedup |", "|---|---|---|",
        f"| batch_size=16 | {pm(b16['tokens_per_s'], b16['tokens_per_s_std'], '{:.0f}')} | {pm(b16['speedup_vs_batch1'], b16['speedup_vs_batch1_std'], '{:.2f}')} |",
        f"| batch_size=1 (one prompt at a time) | {pm(b1['tokens_per_s'], b1['tokens_per_s_std'], '{:.0f}')} | 1 |", "",
        f"Same samples in both sampling arms: {S['sampling']['same_samples_both_arms']}. Token ids identical between pipelines: "
        f"{S['step0']['token_ids_equal']}. Memory: {S['memory']['what']}.", "",
        f"**Notes.** {r['notes']}", "", "![step time, memory, sampling](prefs.png)", ""]
    return "\n".join(lines)

def figure(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    S, A = r["setup"], r["arms"]
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.4))
    ax = axs[0]
    ax.plot(S["timing"]["ours_ms_per_round"], "o-", label="latent_lm (Lightning)"); ax.plot(S["timing"]["trl_ms_per_round"], "s-", label="TRL DPOTrainer")
    ax.set_xlabel("round (model seed)"); ax.set_ylabel("ms per optimiser step"); ax.set_title("time per preference step"); ax.legend(fontsize=8)
    ax.set_ylim(0, None); ax.grid(alpha=.3); ax.set_xticks(range(len(S["timing"]["ours_ms_per_round"])))
    ax = axs[1]
    names = ["latent_lm", "TRL"]
    vals = [[m["peak_rss_increase_mb"] for m in S["memory"]["runs"][k]] for k in ("ours", "trl")]
    ax.bar(names, [statistics.fmean(v) for v in vals], color=["C0", "C1"], alpha=.7)
    for i, v in enumerate(vals): ax.plot([i] * len(v), v, "k.", ms=6)
    ax.set_ylabel("MB"); ax.set_title("peak RSS above common baseline"); ax.grid(alpha=.3, axis="y")
    ax = axs[2]
    sp = S["sampling"]
    ax.bar(["batch 16", "batch 1"], [statistics.fmean(sp["tokens_per_s_batch16"]), statistics.fmean(sp["tokens_per_s_batch1"])], color=["C2", "C7"], alpha=.8)
    for i, v in enumerate([sp["tokens_per_s_batch16"], sp["tokens_per_s_batch1"]]): ax.plot([i] * len(v), v, "k.", ms=6)
    ax.set_ylabel("tokens / s"); ax.set_title(f"HFGenerator sampling ({A['hf_generator_batch16']['speedup_vs_batch1']:.1f}x)"); ax.grid(alpha=.3, axis="y")
    fig.suptitle(f"step-0 loss |ours - TRL| = {A['ours_lightning']['step0_loss_abs_diff_vs_trl_max']:.1e} (sigmoid, IPO, hinge)", fontsize=10)
    plt.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)

if __name__ == "__main__":
    main()
