"""Bad input to every method's verbs, through the real command line: exit code 2, one message naming the problem, no
traceback, and nothing written (each case runs in an empty folder that must stay empty). The shared `generate` verb has
its own, longer table in tests/test_bad_input.py; each method's app tests check many more inputs function by function."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", LATENT_LM_QUIET="1", MPLBACKEND="Agg")
C = lambda p: str(ROOT / "configs" / p)

CASES = [  # (argv, words the message must contain)
    (["blt", "patch", "--text", "abc", "--max_bytes", "-5"], ["max_bytes"]),
    (["blt", "patch", "--text", "abc", "--mode", "nope"], ["mode", "nope"]),
    (["blt", "generate", "--model", "missing_bundle", "--prompts", '["hi"]', "--out", "g.jsonl"], ["missing_bundle"]),
    (["blt", "fit", "--config", C("blt/tiny.yaml"), "--data.batch_size", "0", "--trainer.default_root_dir", "run"], ["batch_size"]),
    (["coconut", "generate", "--model", "missing_model", "--question", "q", "--out", "a.jsonl"], ["missing_model"]),
    (["coconut", "generate", "--model", "missing_model", "--data.data", "symbolic_prosqa", "--data.n", "0"], ["data.n"]),
    (["coconut", "analyze", "--model", "missing_model", "--data.data", "symbolic_prosqa", "--data.task_kwargs", '{"n_nodes": -3}'], []),
    (["scpo", "run", "--config", C("scpo/tiny.yaml"), "--sampling.top_p", "1.5", "--run_dir", "run"], ["top_p"]),
    (["scpo", "run", "--config", C("scpo/tiny.yaml"), "--sampling.k", "two", "--run_dir", "run"], ["sampling.k"]),
    (["scpo", "run", "--config", C("scpo/tiny.yaml"), "--select.mode", "nope", "--run_dir", "run"], ["mode"]),
    (["dpo", "fit", "--config", C("dpo/tiny.yaml"), "--data.data", C("dpo/arith_pairs.jsonl"), "--data.val_data", C("dpo/arith_pairs_val.jsonl"),
      "--data.batch_size", "0", "--trainer.default_root_dir", "run"], ["batch_size"]),
    (["dpo", "fit", "--config", C("dpo/tiny.yaml"), "--trainer.default_root_dir", "run"], ["arith_pairs.jsonl", "file not found"]),
    (["sft", "fit", "--config", C("sft/tiny.yaml"), "--data.data", C("sft/arith_sft.jsonl"), "--data.val_data", C("sft/arith_sft_val.jsonl"),
      "--model.lr", "-1", "--trainer.default_root_dir", "run"], ["lr"]),
    (["generate", "--model", "missing_model", "--prompt", "x", "--out", "g.jsonl"], ["missing_model"]),
    (["generate", "--prompt", "x", "--n", "0", "--out", "g.jsonl"], ["n"]),
    (["tour", "--only", "nope", "--out", "tour"], ["Unknown tour section"]),
    (["docs", "--n_workers", "0", "--dest", "site"], ["n_workers"]),
    (["readme", "--path", "nope.md"], ["nope.md"]),
]

RUNNER = r"""
import contextlib, io, json, os, sys, tempfile
from latent_lm.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    d = tempfile.mkdtemp(); os.chdir(d)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try: code = main(argv)
        except SystemExit as e: code = e.code
        except BaseException as e: code = f"raised {type(e).__name__}: {e}"
    left = sorted(str(p.relative_to(d)) for p in __import__("pathlib").Path(d).rglob("*"))
    out.append([code, err.getvalue()[-1500:], left])
print(json.dumps(out))
"""

def test_bad_input_to_every_method_exits_2_and_writes_nothing():
    r = subprocess.run([sys.executable, "-c", RUNNER, json.dumps([a for a, _ in CASES])], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    problems = []
    for (argv, words), (code, err, left) in zip(CASES, results):
        cmd = "latent-lm " + " ".join(argv)
        if code != 2: problems.append(f"{cmd}: exit {code!r}, want 2; stderr: {err[-300:]}")
        if "Traceback" in err: problems.append(f"{cmd}: printed a traceback: {err[-300:]}")
        missing = [w for w in words if w not in err]
        if missing: problems.append(f"{cmd}: message lacks {missing}: {err[-300:]}")
        if left: problems.append(f"{cmd}: wrote {left[:5]}")
    assert not problems, "\n".join(problems)
