"""The rounds loop under kills: SIGKILL / SIGINT at random points, resumed each time, gives files byte-identical to an
uninterrupted run; nothing finished is recomputed; another config into the same run folder is a clear error."""
import json, os, random, shutil, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent('''
    import json, sys, time, random
    from pathlib import Path
    from latent_lm.rounds import RoundLoop
    run_dir, log, target = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    def prompts(k): return [{"key": f"r{k}-p{i}", "x": i} for i in range(12)]
    def generate(model, chunk):
        mu = json.loads((Path(model) / "config.json").read_text())["mu"]
        out = []
        for it in chunk:
            time.sleep(0.04)
            with open(log, "a") as f: f.write("gen " + it["key"] + "\\n")
            rng = random.Random(it["key"])
            out += [{"key": it["key"], "sample": s, "y": round(mu + it["x"] + rng.gauss(0, 1), 6)} for s in range(3)]
        return out
    def score(model, gens):
        time.sleep(0.01 * len(gens))
        with open(log, "a") as f: f.writelines("score " + json.dumps(g["gen_key"]) + "\\n" for g in gens)
        return [{"gen_key": g["gen_key"], "key": g["key"], "y": g["y"], "score": -abs(g["y"] - target)} for g in gens]
    def select(scored, k):
        best = {}
        for r in scored:
            if r["key"] not in best or r["score"] > best[r["key"]]["score"]: best[r["key"]] = r
        return [{"key": b["key"], "y": b["y"]} for b in best.values()]
    def train(model, recs, out, ref):
        time.sleep(0.3)
        out.mkdir(parents=True, exist_ok=True)
        mu = round(sum(r["y"] for r in recs) / len(recs) - 5.5, 6)
        (out / "config.json").write_text(json.dumps({"mu": mu, "n": len(recs)}))
        return {"mu": mu}
    def evaluate(model, k): return {"mu": json.loads((Path(model) / "config.json").read_text())["mu"]}
    def init():
        m = run_dir / "init"; m.mkdir(exist_ok=True); (m / "config.json").write_text(json.dumps({"mu": 0.0})); return m
    try:
        res = RoundLoop(run_dir, init, 3, prompts, generate, score, select, train, evaluate, chunk_size=2,
                        config={"target": target}).run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr); sys.exit(130)
    except Exception as e:
        print(f"error: {e}", file=sys.stderr); sys.exit(2)
    print(json.dumps([r.metrics["mu"] for r in res]))
''')

ENV = dict(os.environ, LATENT_LM_QUIET="1", OMP_NUM_THREADS="1")


def _start(run_dir, log, target=10.0):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(run_dir), str(log), str(target)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stage(d: Path) -> tuple:
    "How far the toy run got, as an ordered key: (rounds started + models finished, bytes of records committed)."
    n = len(list(d.glob("round_*"))) + len(list(d.glob("round_*/model/latent_lm_done.json")))
    return (n, sum(p.stat().st_size for p in d.glob("round_*/*.jsonl")))


def _files(d: Path) -> dict:
    "Every file of a run folder by relative path (aside: lock files, which hold a pid, and the temporary files of an atomic write that a SIGKILL cut short)."
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock") and not (p.name.startswith(".") and ".tmp" in p.name)}


def lock_held(path: Path) -> bool:
    "Whether another process holds the advisory lock on `path` (the run folder's lock: the run is past its imports)."
    import fcntl
    try: fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError: return False
    try: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); fcntl.flock(fd, fcntl.LOCK_UN); return False
    except BlockingIOError: return True
    finally: os.close(fd)


def wait_for_lock(p, lock: Path, timeout: float = 300) -> float:
    "Wait until the process `p` holds `lock` (it is past its imports and has opened its run folder); returns when it did."
    deadline = time.time() + timeout
    while p.poll() is None and not lock_held(lock) and time.time() < deadline: time.sleep(0.01)
    return time.time()


def timed_run(start, lock: Path, stage=lambda: None):
    """Run to the end; returns stdout, the seconds of work after the run folder was locked, and the timeline
    `[(seconds after the lock, stage)]` of when each `stage()` was first seen."""
    p = start(); t0 = wait_for_lock(p, lock)
    timeline = [(0.0, stage())]
    while p.poll() is None:
        s = stage()
        if s != timeline[-1][1]: timeline.append((time.time() - t0, s))
        time.sleep(0.02)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return out, time.time() - t0, timeline


def kill_and_resume(start, lock: Path, n_kills: int, timeline: list, span: float, seed: int, stage, sigint_every: int = 4):
    """Kill a run at `n_kills` random points of its pipeline, then run it to the end. A point is a time T drawn uniformly from
    one of `n_kills` equal slices of an uninterrupted run's `span` seconds of work (stratified); on its `timeline`, T falls in the segment after stage s, at offset o.
    The run is (re)started, and killed o seconds after it reaches s (a resumed run skips finished work, so this lands in
    the same part of the pipeline). Points are taken in order; SIGINT every `sigint_every`-th kill, else SIGKILL.
    `stage()` is an ordered progress key (a tuple whose first item names the part of the pipeline).
    Returns the last stdout and the kills `(stage()[0] at the kill, signal)`."""
    rng = random.Random(seed)
    points, kills = [(i + rng.random()) * span / n_kills for i in range(n_kills)], []     # one in each n-th of the run
    for T in points:
        i = max(j for j, (t, _) in enumerate(timeline) if t <= T)
        target, offset = timeline[i][1], T - timeline[i][0]
        nxt = timeline[i + 1][1] if i + 1 < len(timeline) else None
        p = start()
        wait_for_lock(p, lock)
        while p.poll() is None and stage() < target: time.sleep(0.01)      # progress keys are ordered tuples
        if nxt is not None and stage() >= nxt: offset = rng.uniform(0, 0.05)  # already past this point (an earlier kill landed late)
        try:
            out, err = p.communicate(timeout=offset)
            assert p.returncode == 0, err[-3000:]
            return out, kills                                   # finished before the kill point: the remaining kills are moot
        except subprocess.TimeoutExpired: pass
        sig = signal.SIGINT if (len(kills) + 1) % sigint_every == 0 else signal.SIGKILL
        at = stage()[0]
        p.send_signal(sig)
        out, err = p.communicate(timeout=300)
        done = p.returncode == 0 or (out.strip() and p.returncode == -sig)   # it had finished (killed in interpreter shutdown)
        if sig == signal.SIGKILL: assert p.returncode == -signal.SIGKILL
        else: assert p.returncode == 130 or done, (p.returncode, err[-3000:])  # a clean stop, or it had just finished
        kills.append((at, sig.name))
        if done: return out, kills
    p = start(); out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return out, kills


@pytest.mark.parametrize("n_kills", [6, pytest.param(20, marks=pytest.mark.slow)])
def test_rounds_crash_points_are_byte_identical(tmp_path, n_kills):
    ref_dir = tmp_path / "run"
    out, work, timeline = timed_run(lambda: _start(ref_dir, tmp_path / "ref.log"), ref_dir / ".lock", lambda: _stage(ref_dir))
    expected = _files(ref_dir)
    shutil.move(ref_dir, tmp_path / "ref")                     # the crashed run uses the same path (paths are in some files)
    log = tmp_path / "run.log"
    out2, kills = kill_and_resume(lambda: _start(ref_dir, log), ref_dir / ".lock", n_kills=n_kills, timeline=timeline, span=work,
                                  seed=n_kills, stage=lambda: _stage(ref_dir))
    print(f"kills ({len(kills)}):", kills)
    assert len(kills) >= max(3, n_kills // 2), f"only {len(kills)} kills landed before the run finished: {kills}"
    assert len({k[0] for k in kills}) >= min(4, max(2, n_kills // 3)), f"the kills did not spread over the rounds: {kills}"
    assert json.loads(out2.strip().splitlines()[-1]) == json.loads(out.strip().splitlines()[-1])
    got = _files(ref_dir)
    assert sorted(got) == sorted(expected)
    for name in expected: assert got[name] == expected[name], f"{name} differs after {len(kills)} kills {kills}"
    # nothing committed was computed twice: at most the chunk in flight at each kill (2 items) is redone
    gens = [l.split()[1] for l in log.read_text().splitlines() if l.startswith("gen ")]
    assert len(gens) - len(set(gens)) <= 2 * len(kills)
    assert set(gens) == {f"r{k}-p{i}" for k in range(3) for i in range(12)}


def test_rounds_rerun_with_other_config_is_an_error(tmp_path):
    p = _start(tmp_path / "run", tmp_path / "log"); out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    before = _files(tmp_path / "run")
    p = _start(tmp_path / "run", tmp_path / "log", target=12.0); out, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "target: 10.0 -> 12.0" in err, err
    assert _files(tmp_path / "run") == before                   # nothing rewritten


def test_rounds_second_process_is_locked_out(tmp_path):
    a = _start(tmp_path / "run", tmp_path / "log")
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "run" / "fingerprint.json").exists(): time.sleep(0.05)
    b = _start(tmp_path / "run", tmp_path / "log2"); out, err = b.communicate(timeout=120)
    a.communicate(timeout=300)
    assert b.returncode == 2 and "in use by another process" in err, err
    assert a.returncode == 0
