"""The record store: fingerprints, foreign files, stale markers and sidecars, locks across processes, torn and corrupt
records, inputs added later; run folders."""
import os, sys, json, signal, subprocess, time, warnings
from pathlib import Path
import pytest
from latent_lm.core import (LatentLMError, RecordStore, JsonlStore, resumable_map, open_run_dir, key_seed, read_jsonl,
                            write_jsonl, FileLock, fingerprint_diff)

ITEMS = [{"key": f"k{i}", "x": i} for i in range(7)]
FP = {"model": "m", "sampling": {"n": 2, "temperature": 0.7}, "seed": 0}


def fn(chunk):
    return [{"key": it["key"], "sample": j, "v": key_seed(0, [it["key"], j]) % 997} for it in chunk for j in range(2)]


def side(p: Path) -> Path: return p.with_name(p.name + ".store.json")


def test_fingerprint_mismatch_names_the_fields_and_the_fix(tmp_path):
    p = tmp_path / "out.jsonl"
    resumable_map(p, ITEMS, fn, chunk_size=3, fingerprint=FP)
    before = p.read_bytes()
    other = {**FP, "sampling": {"n": 4, "temperature": 0.7}, "seed": 1}
    with pytest.raises(LatentLMError) as e: resumable_map(p, ITEMS, fn, fingerprint=other)
    msg = str(e.value)
    assert "sampling.n: 2 -> 4" in msg and "seed: 0 -> 1" in msg and "temperature" not in msg
    assert "overwrite=True" in msg and "--overwrite" in msg and "another output" in msg
    assert p.read_bytes() == before
    # a field that is new or gone is named too
    assert fingerprint_diff({"a": 1}, {"a": 1, "b": 2}) == ['b: "(not set)" -> 2']
    # overwrite starts over with the new settings
    s = resumable_map(p, ITEMS[:2], fn, fingerprint=other, overwrite=True)
    assert len(s) == 4 and s.fingerprint == json.loads(json.dumps(other)) and len(read_jsonl(p)) == 4
    # the same settings resume (tuples and lists, int keys: compared as JSON)
    assert len(resumable_map(p, ITEMS[:2], fn, fingerprint=json.loads(json.dumps(other)))) == 4


def test_foreign_files_are_never_written(tmp_path):
    notes = tmp_path / "notes.txt"; notes.write_text("my notes\n")
    foreign = tmp_path / "data.jsonl"; foreign.write_text('{"key": "k0", "text": "theirs"}\n')
    for p in (notes, foreign):
        before = p.read_bytes()
        with pytest.raises(LatentLMError, match="was not written by latent_lm's record store"): resumable_map(p, ITEMS, fn)
        assert p.read_bytes() == before and not side(p).exists()
    assert sorted(q.name for q in tmp_path.iterdir()) == ["data.jsonl", "notes.txt"]
    # even an empty file the store did not create
    (tmp_path / "empty.jsonl").touch()
    with pytest.raises(LatentLMError, match="not written by"): RecordStore(tmp_path / "empty.jsonl")
    with pytest.raises(LatentLMError, match="is a folder"): RecordStore(tmp_path)


def test_stale_sidecar_and_done_marker_are_not_trusted(tmp_path):
    p = tmp_path / "out.jsonl"
    resumable_map(p, ITEMS, fn, chunk_size=3, fingerprint=FP)
    good = p.read_bytes()
    # the data file replaced by another file of the same length: the hash tells
    p.write_bytes(good.replace(b'"v": ', b'"v":  ', 1)[:-1])
    with pytest.raises(LatentLMError, match="does not match its sidecar"): resumable_map(p, ITEMS, fn, fingerprint=FP)
    # the data file replaced by a shorter one
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(LatentLMError, match="does not match its sidecar"): RecordStore(p)
    # the data file deleted: the leftover sidecar is not trusted; everything is redone
    p.unlink()
    with pytest.warns(UserWarning, match="left from a data file that is gone"):
        s = resumable_map(p, ITEMS, fn, chunk_size=3, fingerprint=FP)
    assert len(s) == 14 and p.read_bytes() == good
    # a damaged sidecar
    side(p).write_text("{not json")
    with pytest.raises(LatentLMError, match="not a record-store sidecar"): RecordStore(p)
    # JsonlStore's .done marker next to a replaced file: ignored with a warning, the work is redone
    q = tmp_path / "sel.jsonl"
    write_jsonl(q, [{"key": 1}, {"key": 2}]); JsonlStore(q).mark_done()
    assert JsonlStore(q).is_done
    write_jsonl(q, [{"key": 3}, {"key": 4}])
    with pytest.warns(UserWarning, match="stale"): assert not JsonlStore(q).is_done
    # an old-style marker (record count only) is checked against the count
    q.with_name("sel.jsonl.done").write_text('{"records": 5}')
    with pytest.warns(UserWarning, match="stale"): assert not JsonlStore(q).is_done


HOLDER = """
import sys, time
from latent_lm.core import RecordStore, open_run_dir
if sys.argv[1] == "store":
    s = RecordStore(sys.argv[2], fingerprint={"a": 1})
    print("ready", flush=True); time.sleep(120)
else:
    with open_run_dir(sys.argv[2], {"a": 1}):
        print("ready", flush=True); time.sleep(120)
"""


@pytest.mark.parametrize("kind", ["store", "run_dir"])
def test_lock_held_by_another_process(tmp_path, kind):
    target = tmp_path / ("out.jsonl" if kind == "store" else "run")
    p = subprocess.Popen([sys.executable, "-c", HOLDER, kind, str(target)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert p.stdout.readline().strip() == "ready"
        with pytest.raises(LatentLMError) as e:
            if kind == "store": resumable_map(target, ITEMS, fn, fingerprint={"a": 1})
            else: open_run_dir(target, {"a": 1}).__enter__()
        assert f"in use by another process (pid {p.pid}" in str(e.value) and "choose another output" in str(e.value)
    finally:
        p.kill(); p.wait()
    # the kernel dropped the lock when the holder died (SIGKILL): no lock file to clean up by hand
    if kind == "store": assert len(resumable_map(target, ITEMS, fn, fingerprint={"a": 1})) == 14
    else:
        with open_run_dir(target, {"a": 1}) as d: assert (d / "fingerprint.json").exists()


def test_lock_in_one_process_for_two_stores(tmp_path):
    with RecordStore(tmp_path / "a.jsonl") as s:
        with pytest.raises(LatentLMError, match=f"pid {os.getpid()}"): RecordStore(tmp_path / "a.jsonl")
        s.commit([{"key": 1}])
    assert not (tmp_path / "a.jsonl.lock").exists()
    with FileLock(tmp_path / "x.lock"): pass


def test_torn_and_corrupt_last_records(tmp_path):
    p = tmp_path / "out.jsonl"
    resumable_map(p, ITEMS[:3], fn, chunk_size=3, fingerprint=FP)
    good = p.read_bytes()
    # a torn record after the committed bytes (a kill mid-write): cut off with a warning, the rest resumes
    with open(p, "ab") as f: f.write(b'{"key": "k3", "sample": 0, "v"')
    with pytest.warns(UserWarning, match="dropped 30 bytes"):
        s = resumable_map(p, ITEMS, fn, chunk_size=3, fingerprint=FP)
    assert len(s) == 14 and p.read_bytes().startswith(good) and len(read_jsonl(p)) == 14
    # a whole garbage line after the committed bytes: same
    with open(p, "ab") as f: f.write(b"\x00\xff garbage\n")
    with pytest.warns(UserWarning, match="dropped 11 bytes"): s = RecordStore(p); s.close()
    assert len(read_jsonl(p)) == 14
    # a committed record edited in place (same length): detected, not trusted, nothing written
    raw = p.read_bytes(); i = raw.index(b'"v": ') + 5
    p.write_bytes(raw[:i] + (b"1" if raw[i:i + 1] != b"1" else b"2") + raw[i + 1:])
    edited = p.read_bytes()
    with pytest.raises(LatentLMError, match="edited or replaced"): resumable_map(p, ITEMS, fn, fingerprint=FP)
    assert p.read_bytes() == edited


def test_added_inputs_are_processed(tmp_path):
    p = tmp_path / "out.jsonl"
    calls = []
    def counting(chunk): calls.append([it["key"] for it in chunk]); return fn(chunk)
    s = resumable_map(p, ITEMS[:4], counting, chunk_size=3, fingerprint=FP)
    assert s.is_done and len(s) == 8 and calls == [["k0", "k1", "k2"], ["k3"]]
    calls.clear()
    s = resumable_map(p, ITEMS, counting, chunk_size=3, fingerprint=FP)
    assert calls == [["k4", "k5", "k6"]] and len(s) == 14 and s.is_done
    calls.clear()
    assert len(resumable_map(p, ITEMS, counting, chunk_size=3, fingerprint=FP)) == 14 and calls == []
    # the file is the same as one written in a single run (chunks end where they would have)
    q = tmp_path / "once.jsonl"
    resumable_map(q, ITEMS, fn, chunk_size=3, fingerprint=FP)
    assert sorted(read_jsonl(p), key=lambda r: (r["key"], r["sample"])) == sorted(read_jsonl(q), key=lambda r: (r["key"], r["sample"]))


def test_records_committed_whole(tmp_path):
    "A function that dies half-way through a chunk leaves none of that chunk's records."
    p = tmp_path / "out.jsonl"
    def dies(chunk):
        for r in fn(chunk):
            if r["key"] == "k4" and r["sample"] == 1: raise RuntimeError("model crashed")
            yield r
    with pytest.raises(RuntimeError): resumable_map(p, ITEMS, dies, chunk_size=3, fingerprint=FP)
    recs = read_jsonl(p)
    assert [r["key"] for r in recs] == ["k0", "k0", "k1", "k1", "k2", "k2"]
    assert not json.loads(side(p).read_text())["done"]
    s = resumable_map(p, ITEMS, fn, chunk_size=3, fingerprint=FP)
    assert s.is_done and len(s) == 14


def test_run_dir(tmp_path):
    r = tmp_path / "run"
    with open_run_dir(r, {"lr": 0.1, "cfg": {"k": 4}}) as d: (d / "round_0").mkdir()
    with pytest.raises(LatentLMError, match=r"cfg.k: 4 -> 8"): open_run_dir(r, {"lr": 0.1, "cfg": {"k": 8}}).__enter__()
    with open_run_dir(r, {"lr": 0.1, "cfg": {"k": 4}}) as d: assert (d / "round_0").is_dir()
    (r / "fingerprint.json").write_text("garbage")
    with pytest.raises(LatentLMError, match="damaged"): open_run_dir(r, {"lr": 0.1}).__enter__()
    with open_run_dir(r, {"lr": 0.2}, overwrite=True) as d: assert not (d / "round_0").exists()
    f = tmp_path / "file"; f.write_text("x")
    with pytest.raises(LatentLMError, match="is a file"): open_run_dir(f, {}).__enter__()
    mine = tmp_path / "mine"; mine.mkdir(); (mine / "thesis.tex").write_text("x")
    with pytest.raises(LatentLMError, match="not a latent_lm run folder"): open_run_dir(mine, {}, overwrite=True).__enter__()
    assert (mine / "thesis.tex").read_text() == "x"


def test_bootstrap_dedupe_kmeans():
    import torch
    from latent_lm.core import bootstrap_ci, paired_bootstrap_ci, dedupe, kmeans, assign_clusters
    lo, hi = bootstrap_ci([0.0, 1.0] * 50)
    assert lo == pytest.approx(0.402, abs=0.03) and hi == pytest.approx(0.598, abs=0.03)
    assert paired_bootstrap_ci([x + 0.25 for x in range(20)], list(range(20))) == pytest.approx((0.25, 0.25))
    with pytest.raises(LatentLMError, match="same length"): paired_bootstrap_ci([1.0], [])
    assert dedupe(["Hello, world!", "hello world", "Goodbye."], threshold=1.0) == [0, 2]
    assert dedupe(["abc def", "abc deg"], threshold=0.5) == [0]
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    c, a = kmeans(x, 4, seed=0)
    brute = [min(range(4), key=lambda j: float(((x[i] - c[j]) ** 2).sum())) for i in range(40)]
    assert a.tolist() == brute == assign_clusters(x, c).tolist()
    for j in range(4): assert torch.allclose(c[j], x[a == j].mean(0), atol=1e-5)     # converged: centroids are the means
