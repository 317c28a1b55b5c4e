"""What every benchmark in bench/ shares: the quiet, repeatable environment, machine facts, and the one results schema.

Every `bench/<name>.py` starts with

    from _common import ROOT, bench_env
    bench_env()                      # before torch / lightning / transformers are imported

and ends with `write_results(name, ...)`, which checks the schema of ../shared/DESIGN.md ("Benchmarks") and writes
`bench/results/<name>.json` and `bench/results/<name>.md`. Figures are written beside them by the script itself.
"""
from __future__ import annotations
import json, logging, os, platform, sys, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
VERDICTS = ("reproduced", "not reproduced", "partial")
# the top-level keys every results file has, in this order; a script may add more after them
KEYS = ("claim", "command", "setup", "arms", "verdict", "premise", "positive_control", "notes")


def bench_env(threads: int = 1):
    "Make the run quiet and repeatable: offline, `threads` intra-op threads, no progress bars, library warnings off."
    if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
    for k, v in {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
                 "HF_DATASETS_OFFLINE": "1", "LATENT_LM_QUIET": "1", "TOKENIZERS_PARALLELISM": "false",
                 "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}.items():
        os.environ.setdefault(k, v)
    warnings.filterwarnings("ignore")
    for n in ("lightning.pytorch", "lightning.fabric", "lightning", "transformers", "datasets", "torch"):
        logging.getLogger(n).setLevel(logging.ERROR)


def machine_info(**extra) -> dict:
    "Cores, processor, Python and library versions: the `setup.machine` of every results file."
    import torch
    info = {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("lightning", "transformers"):
        try: info[mod] = __import__(mod).__version__
        except Exception: pass
    if torch.cuda.is_available(): info["gpu"] = torch.cuda.get_device_name(0)
    return {**info, **extra}


def arm_stats(values_by_seed: dict, seeds: list) -> dict:
    "`{metric: [one value per seed]}` -> `{metric: mean, metric_std: sample std, seeds: [...]}` (the schema's arm record)."
    import statistics
    out = {}
    for k, vs in values_by_seed.items():
        vs = [float(v) for v in vs]
        out[k] = statistics.fmean(vs)
        out[f"{k}_std"] = statistics.stdev(vs) if len(vs) > 1 else 0.0
    out["seeds"] = list(seeds)
    return out


def check_results(res: dict) -> dict:
    "Raise if `res` does not follow the shared schema (keys, verdict word, premise / positive-control shape)."
    missing = [k for k in KEYS if k not in res]
    if missing: raise ValueError(f"results lack the keys {missing}; every results file has {list(KEYS)}")
    if res["verdict"] not in VERDICTS: raise ValueError(f"verdict must be one of {VERDICTS}, got {res['verdict']!r}")
    for k, flag in (("premise", "holds"), ("positive_control", "shows")):
        part = res[k]
        if not isinstance(part, dict) or not {"what", "numbers", flag} <= set(part):
            raise ValueError(f"'{k}' must be a dict with 'what', 'numbers' and '{flag}', got {part!r}")
        if part[flag] not in (True, False, None):        # None: not measured by this benchmark yet (the notes say why)
            raise ValueError(f"'{k}.{flag}' must be true, false or null, got {part[flag]!r}")
    if not isinstance(res["arms"], dict) or not res["arms"]: raise ValueError("'arms' must be a non-empty dict of arm -> metrics")
    if "machine" not in res["setup"]: raise ValueError("setup.machine is missing: use machine_info()")
    return res


def write_results(name: str, res: dict, markdown: str, out_dir: Path | str | None = None) -> Path:
    "Check `res` against the schema, put the shared keys first, and write `<name>.json` and `<name>.md`; returns the JSON path."
    check_results(res)
    out = Path(out_dir) if out_dir else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    ordered = {k: res[k] for k in KEYS} | {k: v for k, v in res.items() if k not in KEYS}
    from latent_lm.core import atomic_write_json, atomic_write_text
    atomic_write_json(out / f"{name}.json", ordered)
    atomic_write_text(out / f"{name}.md", markdown.rstrip() + "\n")
    return out / f"{name}.json"
