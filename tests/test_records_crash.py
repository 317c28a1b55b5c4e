"""Crash-point tests: `latent-lm generate` and `resumable_map` killed at random points (SIGKILL, and SIGINT at some),
resumed each time, give a file byte-identical to an uninterrupted run."""
import os, sys, json, random, signal, subprocess, time
from pathlib import Path
import pytest
from latent_lm.core import RecordStore, resumable_map, key_seed, read_jsonl

from test_rounds import FORK_ENV, Forked, cli_main as _cli     # Forked: a run forked from this warm process (no start-up per kill)
ENV = {**os.environ, **FORK_ENV}


def generate_cmd(d: Path, out: Path) -> list[str]:
    "`latent-lm generate` through the CLI."
    entry = "latent_lm.cli"
    return [sys.executable, "-m", entry, "generate", "--model", str(d / "model"), "--prompts", str(d / "prompts.jsonl"),
            "--n", "3", "--temperature", "1.0", "--top_p", "0.95", "--max_new_tokens", "12", "--batch_size", "4",
            "--seed", "5", "--out", str(out)]


def _files(out: Path) -> list[Path]:
    return [out, out.with_name(out.name + ".store.json"), out.with_name(out.name + ".lock")]


def _crash_loop(start, out: Path, ref: bytes, kills: int, rng: random.Random, startup: float, work: float):
    """Start the command, kill it at a random point, resume, ... until `kills` kills were made; whenever a run finishes,
    its file must equal `ref` (then the next cycle starts from nothing). Returns (kills by signal, cycles, SIGINT stderrs)."""
    side = out.with_name(out.name + ".store.json")
    made, cycles, sigint_err, by_sig = 0, 0, [], {signal.SIGKILL: 0, signal.SIGINT: 0}
    while True:
        p = start()
        t0 = time.monotonic()
        if made < kills:
            if rng.random() < 0.25:                     # anywhere in the start-up (imports, model load, opening the store)
                deadline = t0 + rng.uniform(0.2, startup)
            else:                                       # mid-work: after this process's first commit, a random time later
                m0 = side.stat().st_mtime_ns if side.exists() else 0
                while p.poll() is None and (side.stat().st_mtime_ns if side.exists() else 0) == m0 and time.monotonic() - t0 < 60:
                    time.sleep(0.005)
                deadline = time.monotonic() + rng.uniform(0.0, work)
            while p.poll() is None and time.monotonic() < deadline: time.sleep(0.005)
        if made < kills and p.poll() is None:
            sig = signal.SIGINT if rng.random() < 0.3 else signal.SIGKILL
            p.send_signal(sig)
            _, err = p.communicate(timeout=60)
            if p.returncode != 0:                       # (0: it finished just before the signal came; checked below)
                made += 1; by_sig[sig] += 1
                if sig == signal.SIGINT:
                    assert p.returncode in (130, -signal.SIGINT, 1), (p.returncode, err[-2000:])
                    sigint_err.append((p.returncode, err))
                else: assert p.returncode == -signal.SIGKILL
                continue
        else: _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        got = out.read_bytes()
        assert got == ref, f"cycle {cycles}: resumed file differs from the uninterrupted run ({len(got)} vs {len(ref)} bytes)"
        cycles += 1
        if made >= kills: return by_sig, cycles, sigint_err
        for f in _files(out): f.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch
    from latent_lm.lm import tiny_lm
    d = tmp_path_factory.mktemp("crash")
    m, tok = tiny_lm(seed=3, max_len=128)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():                               # spikier weights: varied lengths and EOS at different points
        for q in m.parameters():
            if q.dim() == 2: q.copy_(torch.randn(q.shape, generator=g) * 0.3)
    m.save_pretrained(d / "model"); tok.save_pretrained(d / "model")
    rng = random.Random(1)
    lines = [{"prompt": f"Question {i}: " + " ".join(rng.choice(["what", "is", "the", "sum", "of", "7", "and", "12"]) for _ in range(rng.randint(1, 12)))}
             for i in range(48)]
    lines[5] = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]}
    lines[9] = lines[3]                                 # a repeated prompt gets its own key and its own samples
    (d / "prompts.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    from latent_lm.lm import load_lm
    import latent_lm.cli, latent_lm.app, jsonargparse
    load_lm(d / "model")                                # import the model classes once here, not in every forked child
    from latent_lm.registry import methods
    methods(layers=True)                                # the CLI imports every method's app module (the registry) at start
    return d


def test_generate_killed_anywhere_resumes_byte_identical(tiny_model):
    d = tiny_model
    ref_out = d / "ref.jsonl"
    r = subprocess.run(generate_cmd(d, ref_out), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ref = ref_out.read_bytes()
    recs = read_jsonl(ref_out)
    assert len(recs) == 48 * 3 and [(x["index"], x["sample"]) for x in recs] == [(i, j) for i in range(48) for j in range(3)]
    assert recs[9 * 3]["key"] != recs[3 * 3]["key"] and recs[9 * 3]["text"] != recs[3 * 3]["text"]
    assert len({x["text"] for x in recs}) > 100                   # really sampled
    # 1) the installed command in fresh interpreters: killed 3 times (SIGINT first, which must exit 130 with a hint)
    out = d / "proc.jsonl"
    p = subprocess.Popen(generate_cmd(d, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    side = out.with_name(out.name + ".store.json")
    t0 = time.monotonic()
    # SIGINT once the store is open (the command's handler is installed by then), however slow a loaded machine makes
    # its start-up: a signal during the imports would test Python's default handler, not the command's
    while p.poll() is None and not side.exists() and time.monotonic() - t0 < 480: time.sleep(0.005)
    assert side.exists() or p.poll() is not None, "the command opened no record store within 480 s"
    p.send_signal(signal.SIGINT); _, err = p.communicate(timeout=120)
    if p.returncode != 0:                                          # (it finished first on a very fast machine otherwise)
        assert p.returncode == 130 and "run the same command again to resume" in err.lower().replace("rerun", "run"), (p.returncode, err[-2000:])
        assert "Traceback" not in err
    # 2) that file resumed, and 20 more random kill points, by processes forked from this warm one (their start-up takes
    #    milliseconds, not the interpreter's seconds); every finished run must equal the uninterrupted one
    argv = generate_cmd(d, out)[3:]
    start = lambda: Forked(d / "fork.err", _cli, argv)
    by_sig, cycles, sigint = _crash_loop(start, out, ref, kills=20, rng=random.Random(0), startup=0.8, work=0.5)
    assert by_sig[signal.SIGKILL] + by_sig[signal.SIGINT] == 20 and by_sig[signal.SIGINT] > 0 and cycles >= 1
    assert any(rc == 130 for rc, e in sigint)
    assert not (d / "proc.jsonl.lock").exists()


def test_generate_same_records_whatever_the_chunking(tiny_model):
    "A prompt's records depend on its key and the run's seed only: another batch size writes the same token choices."
    d = tiny_model
    out = d / "b7.jsonl"
    argv = generate_cmd(d, out)[3:]
    argv[argv.index("--batch_size") + 1] = "7"
    p = Forked(d / "b7.err", _cli, argv); _, err = p.communicate(300)
    assert p.returncode == 0, err[-3000:]
    ref = d / "ref.jsonl"
    if not ref.exists():                                # (when this test runs alone)
        p = Forked(d / "ref.err", _cli, generate_cmd(d, ref)[3:]); _, err = p.communicate(300)
        assert p.returncode == 0, err[-3000:]
    strip = lambda rs: [(x["key"], x["sample"], x["text"], x["num_tokens"]) for x in rs]
    assert strip(read_jsonl(out)) == strip(read_jsonl(ref)) and len(read_jsonl(out)) == 144


def _map_job(out):
    items = [{"key": f"k{i}", "x": i} for i in range(40)]
    def fn(chunk):
        for it in chunk:
            for j in range(3):
                time.sleep(0.004)
                yield {"key": it["key"], "sample": j, "v": key_seed(7, [it["key"], j]) % 100003, "x": it["x"]}
    resumable_map(out, items, fn, chunk_size=5, fingerprint={"fn": "demo", "seed": 7})


def test_resumable_map_killed_mid_chunk(tmp_path):
    _map_job(tmp_path / "ref.jsonl")
    ref = (tmp_path / "ref.jsonl").read_bytes()
    assert len(read_jsonl(tmp_path / "ref.jsonl")) == 120
    out = tmp_path / "crash.jsonl"
    start = lambda: Forked(tmp_path / "err.txt", _map_job, out)
    by_sig, cycles, _ = _crash_loop(start, out, ref, kills=20, rng=random.Random(1), startup=0.1, work=0.3)
    assert sum(by_sig.values()) == 20


def test_kill_inside_a_commit(tmp_path, monkeypatch):
    "Killed after a chunk's bytes reached the file but before its sidecar: the chunk is redone, the file ends identical."
    import latent_lm.core as core
    items = [{"key": i} for i in range(9)]
    fn = lambda ch: [{"key": it["key"], "s": j, "v": key_seed(1, [it["key"], j])} for it in ch for j in range(2)]
    resumable_map(tmp_path / "ref.jsonl", items, fn, chunk_size=2, fingerprint={"a": 1})
    real, calls = core.atomic_write_json, []
    def dying(path, obj, **kw):
        calls.append(1)
        if len(calls) == 3: raise KeyboardInterrupt       # the 3rd sidecar write: the 2nd chunk's commit point
        return real(path, obj, **kw)
    monkeypatch.setattr(core, "atomic_write_json", dying)
    with pytest.raises(KeyboardInterrupt): resumable_map(tmp_path / "c.jsonl", items, fn, chunk_size=2, fingerprint={"a": 1})
    monkeypatch.setattr(core, "atomic_write_json", real)
    assert len(read_jsonl(tmp_path / "c.jsonl")) == 8      # the torn chunk's bytes are there ...
    with pytest.warns(UserWarning, match="dropped .* bytes written after the last committed chunk"):
        s = resumable_map(tmp_path / "c.jsonl", items, fn, chunk_size=2, fingerprint={"a": 1})
    assert len(s) == 18 and (tmp_path / "c.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
