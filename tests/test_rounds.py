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


def cli(argv: list, capsys=None) -> tuple:
    """`latent-lm <argv>` in this process (the one CLI, `latent_lm.cli.main`), on one thread: `(exit status, stdout, stderr)`, read through
    pytest's `capsys` or, without it (a module fixture), through redirected streams. Cheaper than a subprocess, which pays the
    imports again; the method tests use it for reruns, rejected configs and reference runs."""
    import contextlib, io, torch
    from latent_lm.cli import main
    if capsys is not None: capsys.readouterr()
    o, e, threads = io.StringIO(), io.StringIO(), torch.get_num_threads()
    with contextlib.ExitStack() as st:
        if capsys is None: st.enter_context(contextlib.redirect_stdout(o)); st.enter_context(contextlib.redirect_stderr(e))
        torch.set_num_threads(1)               # as a CLI process under ENV (OMP_NUM_THREADS=1): the same floating-point sums, bit for bit
        try: rc = main([str(a) for a in argv])
        except SystemExit as ex: rc = ex.code
        finally: torch.set_num_threads(threads)
    out, err = capsys.readouterr() if capsys is not None else (o.getvalue(), e.getvalue())
    return rc, out, err


def check_rejected(argv: list, needle: str, run_dir: Path, capsys) -> None:
    "`latent-lm <argv>` (in this process) is refused: exit status 2, a message that contains `needle`, nothing written to `run_dir`."
    rc, out, err = cli(argv, capsys)
    assert rc == 2, (rc, err[-1500:])
    assert needle in err, err[-1500:]
    assert not Path(run_dir).exists(), "a rejected config must write nothing"


class Forked:
    """A child process forked from this (warm) test process that runs `fn(*args)` (e.g. `latent_lm.cli.main(argv)`): a real
    process, killed by real signals, without paying the interpreter's start-up (imports, ~5 s on a busy machine) per kill.
    Its stderr goes to the file `err`, its stdout to the file `out` (or nowhere); `communicate` reads them back and, like
    `subprocess.Popen.communicate`, raises `TimeoutExpired` while the child still runs."""
    def __init__(self, err: Path, fn, *args, out: Path | None = None):
        import multiprocessing as mp
        self.err, self.out = Path(err), None if out is None else Path(out)
        self.p = mp.get_context("fork").Process(target=_child, args=(str(err), None if out is None else str(out), fn, args), daemon=True)
        self.p.start()
    def poll(self): return None if self.p.is_alive() else self.p.exitcode
    def send_signal(self, sig): os.kill(self.p.pid, sig)
    def wait(self, timeout=None): self.p.join(timeout); return self.p.exitcode
    def communicate(self, timeout=None):
        self.p.join(timeout)
        if self.p.is_alive(): raise subprocess.TimeoutExpired(f"forked {self.p.pid}", timeout)
        read = lambda f: f.read_text(errors="replace") if f is not None and f.exists() else ""
        return (read(self.out) if self.out is not None else None), read(self.err)
    @property
    def returncode(self): return self.p.exitcode


FORK_ENV = {"LATENT_LM_QUIET": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
            "JSONARGPARSE_DEPRECATION_WARNINGS": "off", "TRANSFORMERS_VERBOSITY": "error"}


def _child(err, out, fn, args):
    import torch
    torch.set_num_threads(1)                              # no OpenMP pool inherited across the fork
    fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644); os.dup2(fd, 2)
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if out else os.open(os.devnull, os.O_WRONLY), 1)
    sys.stdout = open(1, "w", closefd=False); sys.stderr = open(2, "w", closefd=False)   # not pytest's capture of the parent's streams
    os.environ.update(FORK_ENV)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rc = fn(*args)
    sys.stdout.flush(); sys.stderr.flush()
    sys.exit(rc if isinstance(rc, int) else 0)


def cli_main(argv):
    "`latent_lm.cli.main(argv)`, as a `Forked` target."
    from latent_lm.cli import main
    return main([str(a) for a in argv])


def forked_cli(argv: list, folder: Path, warm=()):
    """A `start()` for `kill_and_resume`: each call forks a `latent_lm.cli.main(argv)` from this process (stdout and stderr to
    files in `folder`). `warm`: model folders to load once first, so that the children inherit every import a run needs."""
    import itertools
    from latent_lm.lm import load_lm
    from latent_lm.registry import methods
    import latent_lm.train, latent_lm.prefs, lightning.pytorch                  # train_round's imports
    methods(layers=True)                                                         # the CLI imports every method's app module
    for m in warm: load_lm(m)                                                    # the model classes
    n, folder = itertools.count(), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    def start():
        i = next(n)
        return Forked(folder / f"err{i}.txt", cli_main, list(argv), out=folder / f"out{i}.txt")
    return start


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
    """While a run holds its folder (here this process does, through `RoundLoop.hold`, for as long as the second process needs:
    no race with a first run that might end before the second has started), a second process is refused and writes nothing;
    once the folder is free, the same command runs."""
    from latent_lm.rounds import RoundLoop
    d = tmp_path / "run"
    holder = RoundLoop(d, "init", 3, *([lambda *a: []] * 4), config={"target": 10.0})      # the script's fingerprint
    with holder.hold():
        before = _files(d)
        b = _start(d, tmp_path / "log"); out, err = b.communicate(timeout=300)
        assert b.returncode == 2 and "in use by another process" in err, err
        assert _files(d) == before and not (tmp_path / "log").exists()
    b = _start(d, tmp_path / "log"); out, err = b.communicate(timeout=300)
    assert b.returncode == 0, err


def _train(m0, out, n, epochs):
    "`train_round` of `n` preference pairs for `epochs` epochs (batches of 4), in this process or a forked one."
    from latent_lm.rounds import train_round, TrainConfig
    pairs = [{"prompt": f"{i}+1=", "chosen": str(i + 1), "rejected": str(i), "weight": 1.0} for i in range(n)]
    return train_round(m0, pairs, out, TrainConfig(lr=1e-2, epochs=epochs, batch_size=4), kind="dpo", seed=1)


def _weights(d):
    from safetensors.torch import load_file
    return load_file(str(Path(d) / "model.safetensors"))


def test_train_round_outputs_under_one_parent_keep_their_own_checkpoints(tmp_path):
    """Two `train_round` outputs in one folder, the first SIGKILLed mid-training: the second trains from step 0 (it does not
    resume the first's checkpoint), and the first, rerun, resumes its own checkpoint and ends with the weights of an uninterrupted run."""
    import torch
    from latent_lm.lm import tiny_lm
    from latent_lm.rounds import checkpoint_dir
    m0 = tmp_path / "m0"
    m, tok = tiny_lm(d_model=16, n_layers=1, n_heads=2, seed=0); m.save_pretrained(m0); tok.save_pretrained(m0)
    parent = tmp_path / "round_0"
    a, b = parent / "model", parent / "sft"
    ck = checkpoint_dir(a) / "checkpoints"
    import latent_lm.train, latent_lm.prefs, lightning.pytorch        # imported here once: the forked training starts at once
    p = Forked(tmp_path / "err.txt", _train, m0, a, 8, 20)
    t0 = time.time()
    while not [c for c in ck.glob("epoch=*.ckpt") if not c.name.startswith("epoch=0-")] and p.poll() is None and time.time() - t0 < 300:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); out, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, f"the training ended before it was killed: {err[-2000:]}"
    assert not (a / "config.json").exists() and list(ck.glob("*.ckpt")), "killed mid-training: checkpoints, no model"
    before = {c.name: c.stat().st_mtime_ns for c in ck.iterdir()}
    info_b = _train(m0, b, 4, 3)                                         # 1 step per epoch: 3 steps from step 0
    assert info_b["steps"] == 3, info_b
    assert {c.name: c.stat().st_mtime_ns for c in ck.iterdir()} == before, "the second training touched the first's checkpoints"
    ref_b = _train(m0, tmp_path / "alone" / "sft", 4, 3)
    assert all(torch.equal(v, _weights(tmp_path / "alone" / "sft")[k]) for k, v in _weights(b).items()), "the second training is not a fresh one"
    info_a = _train(m0, a, 8, 20)                                        # resumes its own checkpoint
    ref_a = _train(m0, tmp_path / "alone" / "model", 8, 20)
    assert info_a["steps"] == ref_a["steps"] == 40, (info_a, ref_a)
    wa, wr = _weights(a), _weights(tmp_path / "alone" / "model")
    assert all(torch.equal(v, wr[k]) for k, v in wa.items()), "the resumed training does not end where an uninterrupted one does"
