"Coconut's app module: the registry entry, the pipeline verbs on a trained model, and a table of bad inputs (issue 9): each a clear LatentLMError before any expensive step, with nothing written."
import io, json, os, contextlib, subprocess, sys
from pathlib import Path
import pytest
from latent_lm.core import LatentLMError, read_jsonl
from latent_lm.coconut.data import make_symbolic_prosqa, make_prosqa, save_coconut_json
from latent_lm.coconut.train import fit_coconut, load_coconut
import latent_lm.coconut.train as coconut_train
from latent_lm.coconut.app import generate, analyze, search, Questions, load_questions, COCONUT

ROOT = Path(__file__).resolve().parents[1]
KW = dict(n_nodes=8, min_hops=2, max_hops=2)
SYM = Questions("symbolic_prosqa", n=6, seed=5, task_kwargs=KW)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "A tiny Coconut model (context 64) trained for a few seconds, and data files next to it."
    d = tmp_path_factory.mktemp("coconut_app")
    cfg = {"model": dict(model="tiny-gpt2", d_model=32, n_layers=1, n_heads=2, max_len=64, variant="coconut", max_latent_stage=2,
                         first_stage_epochs=1, epochs_per_stage=1, use_markers=False, lr=1e-3, eval_generate=False),
           "data": dict(data="symbolic_prosqa", n_train=64, n_val=8, batch_size=32, task_kwargs=KW),
           "trainer": dict(max_epochs=3, accelerator="cpu", num_sanity_val_steps=0, enable_checkpointing=False)}
    fit_coconut(cfg, d / "run", seed=0)
    hf = d / "run" / "hf_model"
    save_coconut_json(d / "val.json", make_symbolic_prosqa(10, seed=3, **KW))
    (d / "latin1.json").write_bytes('[{"question": "Ist Jörg ein wumpus?", "steps": [], "answer": "ja"}]'.encode("latin-1"))
    (d / "broken.json").write_text('[{"question": "q",')
    (d / "empty_model").mkdir()
    import shutil
    bad_json = d / "bad_coconut_json"; shutil.copytree(hf, bad_json); (bad_json / "coconut.json").write_text("{not json")
    trunc = d / "truncated_weights"; shutil.copytree(hf, trunc)
    w = trunc / "model.safetensors"; w.write_bytes(w.read_bytes()[:200])
    (d / "a_file").write_text("x")
    return d, hf


def test_registry_entry():
    assert COCONUT.name == "coconut" and COCONUT.arxiv == "2412.06769"
    assert set(COCONUT.all_verbs()) == {"fit", "validate", "test", "generate", "analyze", "search"}
    assert all((ROOT / c).is_file() for c in COCONUT.configs) and COCONUT.configs[0].endswith("tiny.yaml")


def test_no_cli_or_tour_code_in_the_paper_modules_and_no_import_circle():
    src = {n: (ROOT / "latent_lm" / "coconut" / f"{n}.py").read_text() for n in ("data", "model", "train", "analysis")}
    for n, s in src.items():
        assert "argparse.ArgumentParser" not in s and "def tour" not in s and "def cli_" not in s, n
    assert "from .analysis" not in src["train"] and "coconut.analysis" not in src["train"]


def test_verbs_on_a_trained_model(run, tmp_path):
    d, hf = run
    lc = load_coconut(hf)
    with contextlib.redirect_stdout(io.StringIO()):
        assert generate(hf, Questions(str(d / "val.json")), max_new_tokens=4, out=tmp_path / "a.jsonl") == 0
        assert analyze(hf, tmp_path / "an", SYM, max_new_tokens=4) == 0
        assert search(hf, tmp_path / "se", Questions("symbolic_prosqa", n=12, seed=4, task_kwargs=KW), ks=[0, 1]) == 0
    got = read_jsonl(tmp_path / "a.jsonl")
    assert [g["text"] for g in got] == [r["text"] for r in lc.answer(load_questions(Questions(str(d / "val.json"))), max_new_tokens=4)]
    assert [r["k"] for r in json.loads((tmp_path / "an" / "k_sweep.json").read_text())["rows"]] == [0, 1, 2]
    assert json.loads((tmp_path / "se" / "latent_search.json").read_text())["n"] == 12


def _long_question():
    q = make_symbolic_prosqa(1, seed=5, **KW)[0]["question"]
    return " ".join([q] * 10)


# (verb, keyword arguments, part of the message, whether the model may be loaded before the error)
BAD = [
    ("generate", dict(data=SYM, thoughts=500), "thoughts=500 is more than this model's context (64", True),
    ("generate", dict(question=["LONG"]), "but the model's context is 64", True),
    ("generate", dict(data=Questions("symbolic_prosqa", n=0)), "data.n must be an integer >= 1", False),
    ("generate", dict(data=Questions("symbolic_prosqa", n=-3)), "data.n must be an integer >= 1", False),
    ("generate", dict(data=SYM, thoughts=-1), "thoughts must be an integer >= 0", False),
    ("generate", dict(data=SYM, max_new_tokens=0), "max_new_tokens must be an integer >= 1", False),
    ("generate", dict(data=SYM, batch_size=0), "batch_size must be an integer >= 1", False),
    ("generate", dict(data=SYM, model="MISSING"), "the folder does not exist", False),
    ("generate", dict(data=SYM, model="FILE"), "it is a file, not a folder", False),
    ("generate", dict(data=SYM, model="EMPTY"), "has no coconut.json", False),
    ("generate", dict(data=SYM, model="BADJSON"), "coconut.json is corrupt", False),
    ("generate", dict(data=SYM, model="TRUNC"), "not a valid safetensors file", False),
    ("generate", dict(data=Questions("LATIN1")), "is not UTF-8 text", False),
    ("generate", dict(data=Questions("BROKEN")), "is not valid JSON", False),
    ("generate", dict(data=Questions("MISSINGFILE")), "not found", False),
    ("generate", dict(data=Questions("sudoku")), "neither a generator", False),
    ("generate", dict(data=Questions("prosqa", n=2, task_kwargs={"colour": 1})), "do not fit the generator", False),
    ("generate", dict(), "No data", False),
    ("generate", dict(data=SYM, question=["n1 n2"]), "not both", False),
    ("generate", dict(question=[" "]), "question 0 is empty", False),
    ("generate", dict(question=["n1 wumpus n2"]), "not in the tokenizer's vocabulary", True),
    ("generate", dict(question=["n1 <|latent|> n2"]), "reserved token", True),
    ("generate", dict(data=SYM, out="DIR"), "is a folder", False),
    ("analyze", dict(data=SYM, max_thoughts=500), "max_thoughts=500 is more than", True),
    ("analyze", dict(data=SYM, max_thoughts=-2), "max_thoughts must be an integer >= 0", False),
    ("analyze", dict(data=Questions("symbolic_prosqa", n=0)), "data.n must be", False),
    ("analyze", dict(data=SYM, out="FILE"), "is a file", False),
    ("search", dict(data=Questions("arithmetic", n=3)), "no graph fields", False),
    ("search", dict(data=SYM, ks=[-1]), "each of ks must be an integer >= 0", False),
    ("search", dict(data=SYM, ks=[]), "ks is empty", False),
    ("search", dict(data=Questions("prosqa", n=2), ks=[0]), "start at k = 1", False),
    ("search", dict(data=SYM, height="tallest"), "height must be", False),
    ("search", dict(data=SYM, ks=[0, 500]), "the largest of ks=500 is more than", True),
    ("search", dict(data=Questions("symbolic_prosqa", n=0)), "data.n must be", False),
]


@pytest.mark.parametrize("verb,kw,msg,loads", BAD, ids=[f"{v}-{m[:30]}" for v, _, m, _ in BAD])
def test_bad_input(run, tmp_path, monkeypatch, verb, kw, msg, loads):
    d, hf = run
    names = {"MISSING": tmp_path / "nope", "EMPTY": d / "empty_model", "BADJSON": d / "bad_coconut_json", "TRUNC": d / "truncated_weights",
             "LATIN1": str(d / "latin1.json"), "BROKEN": str(d / "broken.json"), "MISSINGFILE": str(tmp_path / "missing.json"),
             "DIR": d, "FILE": d / "a_file", "LONG": _long_question()}
    kw = dict(kw)
    model = names.get(kw.pop("model", None), hf)
    if "data" in kw and kw["data"].data in names: kw["data"] = Questions(names[kw["data"].data])
    if "question" in kw: kw["question"] = [names.get(q, q) for q in kw["question"]]
    out = names.get(kw.pop("out", None), tmp_path / "new" / ("answers.jsonl" if verb == "generate" else "analysis"))
    if not loads:                                    # these must be caught before the model is even loaded
        def no_load(*a, **k): raise AssertionError("the model was loaded before the input was checked")
        if model == hf: monkeypatch.setattr(coconut_train, "load_coconut", no_load)     # (bad model folders fail inside the loader)
    fn = {"generate": generate, "analyze": analyze, "search": search}[verb]
    args = (model,) if verb == "generate" else (model, out)
    if verb == "generate": kw["out"] = out
    with contextlib.redirect_stdout(io.StringIO()) as buf, pytest.raises(LatentLMError) as e:
        fn(*args, **kw)
    assert msg in str(e.value), str(e.value)
    assert not (tmp_path / "new").exists(), "something was written"
    assert buf.getvalue() == ""


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_out_is_caught_before_loading(run, tmp_path, monkeypatch):
    d, hf = run
    ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(0o500)
    monkeypatch.setattr(coconut_train, "load_coconut", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    try:
        with pytest.raises(LatentLMError, match="not writable"): generate(hf, SYM, out=ro / "a.jsonl")
        with pytest.raises(LatentLMError, match="not writable"): analyze(hf, ro / "an", SYM)
    finally: ro.chmod(0o700)


def test_thoughts_for_a_variant_without_thought_tokens(run, tmp_path):
    "A CoT model takes no thoughts: asking for some is a clear error before generation, and analyze's default k-sweep is k = 0 only."
    d, hf = run
    cfg = {"model": dict(model="tiny-gpt2", d_model=16, n_layers=1, n_heads=2, max_len=64, variant="cot", eval_generate=False),
           "data": dict(data="symbolic_prosqa", n_train=16, n_val=4, batch_size=16, task_kwargs=KW),
           "trainer": dict(max_epochs=1, accelerator="cpu", num_sanity_val_steps=0, enable_checkpointing=False)}
    fit_coconut(cfg, tmp_path / "cot", seed=0)
    cot = tmp_path / "cot" / "hf_model"
    with pytest.raises(LatentLMError, match="has no thought token, so it takes 0 thoughts, not 2"):
        generate(cot, SYM, thoughts=2, out=tmp_path / "o" / "a.jsonl")
    assert not (tmp_path / "o").exists()
    with contextlib.redirect_stdout(io.StringIO()):
        assert analyze(cot, tmp_path / "an", SYM, max_new_tokens=3, with_search=False) == 0
    assert [r["k"] for r in json.loads((tmp_path / "an" / "k_sweep.json").read_text())["rows"]] == [0]


def test_n_zero_and_thoughts_500_through_the_cli(run, tmp_path):
    "Through `latent-lm coconut generate` (exit code 2 and the message, nothing written), as issue 9 found them."
    d, hf = run
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", LATENT_LM_QUIET="1")
    for extra, msg in ((["--data.data", "symbolic_prosqa", "--data.n", "0"], "data.n must be an integer >= 1"),
                       (["--data.data", "symbolic_prosqa", "--data.n", "3", "--data.task_kwargs", json.dumps(KW), "--thoughts", "500"],
                        "thoughts=500 is more than")):
        r = subprocess.run([sys.executable, "-m", "latent_lm.cli", "coconut", "generate", "--model", str(hf), *extra,
                            "--out", str(tmp_path / "o" / "a.jsonl")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert not (tmp_path / "o").exists()


def test_fit_then_generate_through_the_cli(tmp_path):
    "`latent-lm coconut fit` with stacked configs (tiny + a variant overlay, shortened), then `generate` on the model it saved."
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", LATENT_LM_QUIET="1")
    cli = lambda *a: subprocess.run([sys.executable, "-m", "latent_lm.cli", "coconut", *map(str, a)], capture_output=True, text=True,
                                    env=env, cwd=ROOT, timeout=600)
    run_dir = tmp_path / "run"
    r = cli("fit", "--config", "configs/coconut/tiny.yaml", "--config", "configs/coconut/pause_as_thought.yaml", "--trainer.max_epochs", "2",
            "--data.n_train", "32", "--data.n_val", "8", "--data.n_test", "0", "--model.first_stage_epochs", "1", "--model.d_model", "16",
            "--trainer.default_root_dir", run_dir, "--trainer.logger.init_args.save_dir", run_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = sorted(run_dir.rglob("hf_model/coconut.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["curriculum"]["variant"] == "pause_as_thought"
    r = cli("generate", "--model", saved[0].parent, "--data.data", "symbolic_prosqa", "--data.n", "4", "--max_new_tokens", "4",
            "--out", tmp_path / "answers.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
    got = read_jsonl(tmp_path / "answers.jsonl")
    assert len(got) == 4 and {g["n_thoughts"] for g in got} == {3}
