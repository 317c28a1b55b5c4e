"""Every bad input of `latent-lm generate` (and the shared layers under it) gets exit code 2, one message that names the
problem, and writes nothing. Runs through `latent_lm.cli.main`, the `latent-lm` console script."""
import os, json, shutil
from pathlib import Path
import pytest
from latent_lm.core import FileLock, resumable_map

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from latent_lm.lm import tiny_lm
    d = tmp_path_factory.mktemp("model") / "tiny"
    m, tok = tiny_lm(seed=0, max_len=64)
    m.save_pretrained(d); tok.save_pretrained(d)
    return d


def run_cli(argv) -> int:
    from latent_lm.cli import main
    return main(argv)


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst); return dst


def _prompts(t: Path, text: str | bytes, name="p.txt") -> str:
    p = t / name
    p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text)
    return str(p)


def _store(t: Path, model: Path) -> str:
    "An output written by an earlier run with temperature 1.0."
    from latent_lm.app import generate
    out = t / "old.jsonl"
    generate(model=str(model), prompt=["hi"], temperature=1.0, max_new_tokens=3, out=str(out))
    return str(out)


def _damaged(t, model, how):
    d = _copy_model(model, t / "damaged")
    w = d / "model.safetensors"
    if how == "truncated": w.write_bytes(w.read_bytes()[:-100])
    elif how == "empty": w.write_bytes(b"")
    elif how == "header": w.write_bytes(b"\xff" * 8 + w.read_bytes()[8:])
    elif how == "config": (d / "config.json").write_text("{oops")
    elif how == "noconfig": (d / "config.json").unlink()
    elif how == "noweights": w.unlink()
    return str(d)


# (id, function of (tmp dir, model dir) -> (argv after "generate", expected text in the message))
CASES = [
    ("n-zero", lambda t, m: (["--prompt", "hi", "--n", "0"], "n must be an integer >= 1, got 0")),
    ("n-negative", lambda t, m: (["--prompt", "hi", "--n", "-3"], "n must be an integer >= 1, got -3")),
    ("n-not-a-number", lambda t, m: (["--prompt", "hi", "--n", "abc"], "n")),
    ("n-float", lambda t, m: (["--prompt", "hi", "--n", "1.5"], "n")),
    ("max-new-tokens-negative", lambda t, m: (["--prompt", "hi", "--max_new_tokens", "-5"], "max_new_tokens must be an integer >= 1, got -5")),
    ("max-new-tokens-zero", lambda t, m: (["--prompt", "hi", "--max_new_tokens", "0"], "max_new_tokens must be an integer >= 1")),
    ("top-p-above-one", lambda t, m: (["--prompt", "hi", "--top_p", "1.5"], "top_p must be a number in (0, 1], got 1.5")),
    ("top-p-zero", lambda t, m: (["--prompt", "hi", "--top_p", "0"], "top_p must be a number in (0, 1]")),
    ("temperature-negative", lambda t, m: (["--prompt", "hi", "--temperature", "-1"], "temperature must be a number >= 0, got -1")),
    ("temperature-nan", lambda t, m: (["--prompt", "hi", "--temperature", "nan"], "temperature")),
    ("batch-size-zero", lambda t, m: (["--prompt", "hi", "--batch_size", "0"], "batch_size must be an integer >= 1")),
    ("seed-not-int", lambda t, m: (["--prompt", "hi", "--seed", "x"], "seed")),
    ("unknown-option", lambda t, m: (["--prompt", "hi", "--temprature", "1"], "temprature")),
    ("empty-stop", lambda t, m: (["--prompt", "hi", "--stop", ""], "stop strings must be non-empty")),
    ("system-without-chat", lambda t, m: (["--prompt", "hi", "--chat", "false", "--system", "Be brief."], "system is only used with chat")),
    ("messages-without-chat", lambda t, m: (["--prompts", _prompts(t, '{"prompt": [{"role": "user", "content": "hi"}]}\n', "p.jsonl"),
                                              "--chat", "false"], "prompt 1 is a list of chat messages, which needs chat on")),
    ("no-prompts", lambda t, m: ([], "No prompts")),
    ("empty-prompt", lambda t, m: (["--prompt", ""], "prompt 1 is empty")),
    ("prompt-file-missing", lambda t, m: (["--prompts", str(t / "nope.txt")], "file not found")),
    ("prompt-file-is-dir", lambda t, m: (["--prompts", str(t)], "is a folder")),
    ("prompt-file-not-utf8", lambda t, m: (["--prompts", _prompts(t, "ok\ncaf\xe9\n".encode("latin1"))], "is not UTF-8 text: byte 0xe9 at offset 6 (line 2)")),
    ("prompt-file-empty", lambda t, m: (["--prompts", _prompts(t, "\n\n")], "No prompts")),
    ("jsonl-missing-key", lambda t, m: (["--prompts", _prompts(t, '{"prompt": "a"}\n{"question": "b"}\n', "p.jsonl")],
                                         "line 2: no 'prompt' field (fields: question)")),
    ("jsonl-wrong-prompt-key", lambda t, m: (["--prompts", _prompts(t, '{"prompt": "a"}\n', "p.jsonl"), "--prompt_key", "text"],
                                              "line 1: no 'text' field")),
    ("jsonl-invalid-line", lambda t, m: (["--prompts", _prompts(t, '{"prompt": "a"}\n{"prompt": \n', "p.jsonl")], "line 2: not valid JSON")),
    ("jsonl-not-an-object", lambda t, m: (["--prompts", _prompts(t, '["a"]\n', "p.jsonl")], "expected a JSON object")),
    ("jsonl-prompt-not-text", lambda t, m: (["--prompts", _prompts(t, '{"prompt": 3}\n', "p.jsonl")], "must be a non-empty string or a list of")),
    ("overlong-prompt", lambda t, m: (["--prompt", "x" * 200], "tokens, longer than the model's context of 64 tokens")),
    ("overlong-prompt-in-file", lambda t, m: (["--prompts", _prompts(t, "short\n" + "y" * 100 + "\n")], "prompt 2 ('yyy")),
    ("device-unknown", lambda t, m: (["--prompt", "hi", "--device", "gpu7"], "is not a device torch knows")),
    ("model-missing", lambda t, m: (["--prompt", "hi", "--model", str(t / "no_model")], "no model at")),
    ("model-folder-no-config", lambda t, m: (["--prompt", "hi", "--model", _damaged(t, m, "noconfig")], "has no config.json")),
    ("model-config-not-json", lambda t, m: (["--prompt", "hi", "--model", _damaged(t, m, "config")], "config.json is not valid JSON")),
    ("model-no-weights", lambda t, m: (["--prompt", "hi", "--model", _damaged(t, m, "noweights")], "no weights")),
    ("safetensors-truncated", lambda t, m: (["--prompt", "hi", "--model", _damaged(t, m, "truncated")], "model.safetensors is not a valid safetensors file")),
    ("safetensors-empty", lambda t, m: (["--prompt", "hi", "--model", _damaged(t, m, "empty")], "not a valid safetensors file (only 0 bytes)")),
    ("safetensors-bad-header", lambda t, m: (["--prompt", "hi", "--model", _damaged(t, m, "header")], "not a valid safetensors file")),
    ("model-is-plain-file", lambda t, m: (["--prompt", "hi", "--model", _prompts(t, "x")], "is a file but not a .gguf")),
    ("gguf-missing", lambda t, m: (["--prompt", "hi", "--model", str(t / "m.gguf")], "GGUF file not found")),
    ("hub-id-not-cached", lambda t, m: (["--prompt", "hi", "--model", "nobody-xyz/no-such-model"], "Could not load 'nobody-xyz/no-such-model'")),
    ("out-is-dir", lambda t, m: (["--prompt", "hi", "--out", str(t)], "is a folder")),
    ("out-parent-is-file", lambda t, m: (["--prompt", "hi", "--out", _prompts(t, "x") + "/out.jsonl"], "is a file, not a folder")),
    ("out-unwritable-sysfs", lambda t, m: (["--prompt", "hi", "--out", "/sys/latent_lm_test/out.jsonl"], "is not writable")),
    ("out-existing-text-file", lambda t, m: (["--prompt", "hi", "--out", _prompts(t, "my notes\n", "notes.txt")],
                                              "was not written by latent_lm's record store")),
    ("out-foreign-jsonl", lambda t, m: (["--prompt", "hi", "--out", _prompts(t, '{"key": "x"}\n', "theirs.jsonl")], "--overwrite")),
    ("out-other-settings", lambda t, m: (["--prompt", "hi", "--temperature", "0.5", "--max_new_tokens", "3", "--out", _store(t, m)],
                                          "temperature: 1.0 -> 0.5")),
]
import torch
if not torch.cuda.is_available():
    CASES += [("device-cuda-absent", lambda t, m: (["--prompt", "hi", "--device", "cuda"], "no CUDA GPU is available here"))]
if not ROOT_USER:                                 # permission bits do not stop root
    CASES += [
        ("out-read-only-file", lambda t, m: (["--prompt", "hi", "--out", _readonly_file(t)], "cannot be written")),
        ("out-read-only-dir", lambda t, m: (["--prompt", "hi", "--out", _readonly_dir(t) + "/sub/out.jsonl"], "is not writable")),
        ("prompt-file-unreadable", lambda t, m: (["--prompts", _unreadable(t)], "cannot read")),
    ]


def _readonly_file(t):
    p = Path(_prompts(t, "", "ro.jsonl")); p.chmod(0o444); return str(p)
def _readonly_dir(t):
    d = t / "ro"; d.mkdir(); d.chmod(0o555); return str(d)
def _unreadable(t):
    p = Path(_prompts(t, "hi\n", "secret.txt")); p.chmod(0o000); return str(p)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.setenv("LATENT_LM_QUIET", "1")
    name, build = case
    args, expected = build(tmp_path, model_dir)
    if "--model" not in args: args = ["--model", str(model_dir)] + args
    out = args[args.index("--out") + 1] if "--out" in args else str(tmp_path / "fresh.jsonl")
    if "--out" not in args: args += ["--out", out]
    before, model_before = _snapshot(tmp_path), _snapshot(model_dir)
    capsys.readouterr()
    rc = run_cli(["generate", *args])
    err = capsys.readouterr().err
    assert rc == 2, (name, rc, err[-2000:])
    assert expected in err, (name, err[-2000:])
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before and _snapshot(model_dir) == model_before, f"{name}: something was written"


def test_lock_held(model_dir, tmp_path, capsys, monkeypatch):
    "A second writer of the same --out gets exit 2 and the holder's pid; the first writer's file is untouched."
    monkeypatch.setenv("LATENT_LM_QUIET", "1")
    out = tmp_path / "out.jsonl"
    with FileLock(tmp_path / "out.jsonl.lock"):
        rc = run_cli(["generate", "--model", str(model_dir), "--prompt", "hi", "--max_new_tokens", "3", "--out", str(out)])
        err = capsys.readouterr().err
    assert rc == 2 and f"in use by another process (pid {os.getpid()}" in err
    assert not out.exists()


def test_good_input_still_works(model_dir, tmp_path, capsys, monkeypatch):
    "The control: the same command line with good values writes its records (so the table above tests what it says)."
    monkeypatch.setenv("LATENT_LM_QUIET", "1")
    p = _prompts(tmp_path, '{"prompt": "a"}\n{"prompt": [{"role": "user", "content": "b"}]}\n', "p.jsonl")
    rc = run_cli(["generate", "--model", str(model_dir), "--prompts", p, "--n", "2", "--max_new_tokens", "4",
                  "--stop", "zz", "--system", "Be brief.", "--out", str(tmp_path / "o.jsonl")])
    assert rc == 0, capsys.readouterr().err
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 4
