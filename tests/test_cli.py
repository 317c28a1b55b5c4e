"The latent-lm console script: help, errors, generate (with resume), the tour, training through LightningCLI."
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", LATENT_LM_QUIET="1", MPLBACKEND="Agg")

def cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "latent_lm.cli", *map(str, args)], cwd=cwd or ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)

def test_help_lists_commands_and_methods():
    r = cli("--help"); assert r.returncode == 0, r.stderr
    for w in ("tour", "generate", "docs", "readme", "dpo", "sft"): assert w in r.stdout

@pytest.mark.parametrize("args,msg", [(["dpoo", "fit"], "Did you mean 'dpo'"), (["dpo"], "needs a verb"), (["nope"], "Unknown method"),
                                      (["dpo", "fitt"], "Did you mean 'fit'")])
def test_bad_commands_exit_2_with_a_clear_message(args, msg):
    r = cli(*args); assert r.returncode == 2 and msg in r.stderr, r.stderr

def test_a_planned_method_exits_2_saying_it_is_planned(monkeypatch, capsys):
    import latent_lm.registry as R
    from latent_lm.cli import main
    monkeypatch.setitem(R.PLANNED, "demo_planned", R.Method("demo_planned", "A planned demo", "not built yet"))
    assert main(["demo_planned", "run"]) == 2
    assert "planned but not implemented" in capsys.readouterr().err

def test_every_registered_verb_has_help():
    "Every verb in the registry resolves, imports and builds its parser (typed signature / LightningCLI classes): --help exits 0."
    code = ("import io, json, sys, contextlib\n"
            "from latent_lm.cli import main\n"
            "from latent_lm.registry import COMMANDS, methods\n"
            "words = [[c] for c in COMMANDS] + [[m.name, v] for m in methods(layers=True).values() for v in m.all_verbs()]\n"
            "res = {}\n"
            "for w in words:\n"
            "    out, err = io.StringIO(), io.StringIO()\n"
            "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
            "        try: code = main([*w, '--help'])\n"
            "        except SystemExit as e: code = e.code\n"
            "    res[' '.join(w)] = [code, 'usage' in out.getvalue().lower(), err.getvalue()[-500:]]\n"
            "print(json.dumps(res))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(res) >= 20, res.keys()
    bad = {w: v for w, v in res.items() if v[0] != 0 or not v[1]}
    assert not bad, bad

def test_readme_tables_are_current():
    "README.md's method table and command list are generated from the registry: rerun `latent-lm readme` when this fails."
    r = cli("readme", "--check_only", "true"); assert r.returncode == 0, r.stdout + r.stderr

def test_pipeline_config_files_stack_and_print(tmp_path):
    "Pipeline verbs read --config files (stacked) and dotted overrides, and --print_config shows the result."
    a = tmp_path / "a.yaml"; a.write_text("out: runs/x\nonly: shared\n")
    b = tmp_path / "b.yaml"; b.write_text("force: true\n")
    r = cli("tour", "--config", a, "--config", b, "--full", "true", "--print_config")
    assert r.returncode == 0, r.stderr
    import yaml
    got = yaml.safe_load(r.stdout)
    assert got["out"] == "runs/x" and got["only"] == "shared" and got["force"] is True and got["full"] is True
    r = cli("tour", "--full", "maybe"); assert r.returncode == 2 and "full" in r.stderr

def test_sigint_exits_130_with_a_resume_hint(tmp_path):
    "Ctrl-C during a command: exit code 130 and a message that says how to resume, no traceback."
    import signal, time
    code = ("import sys, time, latent_lm.tour as T\n"
            "def slow(d, quick=True):\n    print('started', flush=True); time.sleep(60)\n"
            "T.slow = slow; T.EXTRA_STEPS['slow'] = ('latent_lm.tour:slow', 'slow')\n"
            "from latent_lm.cli import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.Popen([sys.executable, "-c", code, "tour", "--only", "slow", "--out", str(tmp_path / "t")], cwd=ROOT, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        line = p.stdout.readline()
        if "started" in line: break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (out, err)
    assert "run the same command again to resume" in err and "Traceback" not in err

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from latent_lm.lm import tiny_lm
    d = tmp_path_factory.mktemp("tiny") / "model"
    m, t = tiny_lm(); m.save_pretrained(d); t.save_pretrained(d)
    return d

def test_generate_writes_and_resumes(tiny_dir, tmp_path):
    out = tmp_path / "gens.jsonl"
    args = ["generate", "--model", tiny_dir, "--prompt", '["hello", "2+2?"]', "--n", "3", "--max_new_tokens", "5", "--out", out]
    r = cli(*args); assert r.returncode == 0, r.stderr
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(recs) == 6 and {r["sample"] for r in recs} == {0, 1, 2}
    assert all(r["num_tokens"] <= 5 and r["finish_reason"] in ("stop", "length") for r in recs)
    before = out.read_bytes()
    r = cli(*args); assert r.returncode == 0
    assert out.read_bytes() == before                       # finished: nothing regenerated or appended

def test_generate_bad_input(tiny_dir, tmp_path):
    r = cli("generate", "--model", tiny_dir); assert r.returncode == 2 and "prompt" in r.stderr.lower(), r.stderr
    r = cli("generate", "--model", tmp_path / "missing", "--prompt", "x"); assert r.returncode == 2, r.stderr

def test_tour_shared_section(tmp_path):
    "The README's main job, limited to the shared layers (the method sections have their own tests)."
    r = cli("tour", "--only", "shared", "--out", tmp_path / "tour", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = (tmp_path / "tour" / "report.html").read_text()
    assert "The shared layers" in html and html.count("data:image/png;base64,") >= 2
    sec = json.loads((tmp_path / "tour" / "shared" / "section.json").read_text())
    assert sec["numbers"]["12+7 answered 19 (greedy)"] is True
    assert abs(sec["numbers"]["DPO loss at step 0"] - 0.6931) < 1e-3

def test_dpo_fit_through_lightningcli(tmp_path):
    "configs/dpo/tiny.yaml through `latent-lm dpo fit` (SmolLM2), shortened: the run folder holds config, metrics and an HF model."
    pairs = [json.loads(l) for l in (ROOT / "configs/dpo/arith_pairs.jsonl").read_text().splitlines()[:8]]
    data = tmp_path / "pairs.jsonl"; data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    r = cli("dpo", "fit", "--config", "configs/dpo/tiny.yaml", "--trainer.max_steps", "2", "--trainer.val_check_interval", "1.0",
            "--data.data", data, "--data.val_data", "null", "--data.ref_cache", tmp_path / "ref.jsonl",
            "--trainer.default_root_dir", tmp_path / "run", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    v = tmp_path / "run"                                           # every output of the run sits in its folder
    assert (v / "config.yaml").exists() and (v / "hf_model" / "config.json").exists() and (v / "fingerprint.json").exists()
    import csv
    rows = list(csv.DictReader(open(v / "metrics.csv")))
    losses = [float(x["train/loss"]) for x in rows if x.get("train/loss")]
    assert len(losses) == 2 and abs(losses[0] - 0.6931) < 1e-3      # policy == reference at step 0
    assert len((tmp_path / "ref.jsonl").read_text().splitlines()) == 8

def test_dpo_fit_missing_column(tmp_path):
    data = tmp_path / "bad.jsonl"; data.write_text(json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    r = cli("dpo", "fit", "--config", "configs/dpo/tiny.yaml", "--data.data", data, "--data.val_data", "null",
            "--trainer.default_root_dir", tmp_path / "run", timeout=600)
    assert r.returncode != 0 and "rejected" in r.stderr
