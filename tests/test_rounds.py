"A rounds run killed with SIGKILL mid-way resumes without recomputing any finished record."
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import json, sys, time, random
    from pathlib import Path
    from latent_lm.rounds import RoundLoop
    run_dir, log = Path(sys.argv[1]), Path(sys.argv[2])
    def prompts(k): return [{"key": f"r{k}-p{i}", "x": i} for i in range(12)]
    def generate(model, chunk):
        out = []
        for it in chunk:
            time.sleep(0.05)
            with open(log, "a") as f: f.write("gen " + it["key"] + "\\n")
            out += [{"key": it["key"], "sample": s, "y": it["x"] + s} for s in range(2)]
        return out
    def score(model, gens):
        with open(log, "a") as f: f.writelines("score " + json.dumps(g["gen_key"]) + "\\n" for g in gens)
        return [{"gen_key": g["gen_key"], "key": g["key"], "score": g["y"]} for g in gens]
    def select(scored, k): return [{"key": r["key"], "y": r["score"]} for r in scored if r["gen_key"][1] == 1]
    def train(model, recs, out, ref):
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"n": len(recs), "sum": sum(r["y"] for r in recs)}))
    init = run_dir / "init"; init.mkdir(parents=True, exist_ok=True); (init / "config.json").write_text("{}")
    res = RoundLoop(run_dir, init, 2, prompts, generate, score, select, train, chunk_size=1).run()
    print(json.dumps([json.loads(Path(r.model_out, "config.json").read_text()) for r in res]))
''')

def _run(args, **kw):
    env = dict(os.environ, LATENT_LM_QUIET="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

def test_rounds_kill_and_resume(tmp_path):
    ref = _run([tmp_path / "ref", tmp_path / "ref.log"]); out, err = ref.communicate(timeout=120)
    assert ref.returncode == 0, err
    expected = json.loads(out.strip().splitlines()[-1])

    run, log = tmp_path / "run", tmp_path / "run.log"
    p = _run([run, log])
    gens = run / "round_1" / "generations.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (gens.exists() and len(gens.read_text().splitlines()) >= 8): time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed; make generate slower"
    done_keys = {json.loads(l)["key"] for l in gens.read_text().splitlines() if l.strip()}
    assert 4 <= len(done_keys) < 12
    n_before = len(log.read_text().splitlines())

    p = _run([run, log]); out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == expected          # same result as the uninterrupted run
    after = log.read_text().splitlines()[n_before:]
    regen = {l.split()[1] for l in after if l.startswith("gen ")}
    assert not (regen & done_keys), f"recomputed finished records: {regen & done_keys}"
    assert not any(l.startswith("gen r0-") for l in after)              # round 0 untouched
    assert regen == {f"r1-p{i}" for i in range(12)} - done_keys       # exactly the missing ones
    # every generation of the whole run was computed exactly once, except items in flight when killed
    all_gen = [l.split()[1] for l in log.read_text().splitlines() if l.startswith("gen ")]
    assert len(all_gen) - len(set(all_gen)) <= 1
    assert set(all_gen) == {f"r{k}-p{i}" for k in (0, 1) for i in range(12)}
