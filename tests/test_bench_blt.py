"Smoke test of bench/blt.py's pieces at minimal size (no timing assertions)."
import importlib.util, json, math, random, sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_blt", ROOT / "bench" / "blt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_noise_recipes(bench):
    rng = random.Random(0)
    text = "The quick brown fox jumps over the lazy dog. " * 40
    assert bench.noise_text(text, "uppercase", rng) == text.upper()
    rc = bench.noise_text(text, "random_case", rng)
    assert rc.lower() == text.lower() and rc != text and rc != text.upper()
    dr = bench.noise_text(text, "drop", rng)
    assert 0.8 * len(text) < len(dr) < 0.97 * len(text)
    rp = bench.noise_text(text, "repeat", rng)
    assert 1.2 * len(text) < len(rp) < 1.6 * len(text)          # 20% of characters get 1-3 extra copies: +40% expected
    with pytest.raises(ValueError): bench.noise_text(text, "shout", rng)


def _arms(bench, means: dict, std: float = 0.01):
    arms = {}
    for arm, m in means.items():
        seeds = [{"seed": s, "bpb": m + d} for s, d in enumerate((-std, 0.0, std))]
        arms[arm] = {"bpb": m, "bpb_std": std, "seeds": seeds}
    return arms


def test_verdict_rule(bench):
    good = {"static_ps4": 2.0, "entropy_ps4": 1.9, "space_ps4": 1.91, "static_ps6": 2.1, "entropy_ps6": 1.95, "space_ps6": 1.97}
    v, det = bench.verdict(_arms(bench, good), [4, 6])
    assert v == "reproduced" and det["4"]["entropy_beats_static"] and det["6"]["space_close"]
    assert det["4"]["paired_static_minus_entropy_per_seed"] == pytest.approx([0.1, 0.1, 0.1])
    assert det["4"]["paired_std"] == pytest.approx(0.0, abs=1e-12)   # both arms move together over seeds: the noise is shared
    un = _arms(bench, good)
    un["entropy_ps4"]["seeds"] = un["entropy_ps4"]["seeds"][::-1]    # the same spread, now opposite: differences 0.08, 0.1, 0.12
    assert bench.verdict(un, [4, 6])[1]["4"]["paired_std"] == pytest.approx(0.02)
    far_space = {**good, "space_ps6": 2.09}                     # space far from entropy at ~6: not everything holds
    assert bench.verdict(_arms(bench, far_space), [4, 6])[0] == "partial"
    one = {**good, "entropy_ps6": 2.095}                       # gap 0.005 < pooled std 0.01 at ~6
    assert bench.verdict(_arms(bench, one), [4, 6])[0] == "partial"
    none = {**one, "entropy_ps4": 2.01}
    assert bench.verdict(_arms(bench, none), [4, 6])[0] == "not reproduced"


def test_windows_cover_stream(bench):
    s = torch.arange(23)
    x, y, rest = bench.windows(s, 5, tail=True)
    assert torch.equal(torch.cat([y.flatten(), rest[1].flatten()]), s[1:])
    assert torch.equal(torch.cat([x.flatten(), rest[0].flatten()]), s[:-1])


def test_smoke_jobs(bench, tmp_path):
    cfg = json.loads(json.dumps(bench.MODES["smoke"]))
    cfg.update(steps=2, train_bytes=30_000, ngram_bytes=30_000, heldout_bytes=1_500, robust_bytes=400)
    prep = bench.prepare(cfg, tmp_path, log=lambda m: None)
    assert set(prep["patchers"]) == {f"{s}_ps4" for s in bench.SCHEMES}
    # every patcher was matched to static's realised size on the training windows (space via max_patch_length)
    res = [bench.run_job("entropy_ps4:0", cfg, prep, tmp_path), bench.run_job("static_ps4:0", cfg, prep, tmp_path),
           bench.run_job("space_ps4:0", cfg, prep, tmp_path), bench.run_job("bpe:0", cfg, prep, tmp_path)]
    for r in res:
        assert math.isfinite(r["bpb"]) and 0 < r["bpb"] < 20
        for k in bench.NOISES: assert math.isfinite(r[f"robust_{k}_bpb"])
    ent, st = res[0], res[1]
    assert ent["params"] == st["params"] and ent["bytes_seen"] == st["bytes_seen"]
    assert abs(ent["bytes_per_patch_train"] / st["bytes_per_patch_train"] - 1) < 0.05
    assert abs(res[3]["bytes_seen"] / st["bytes_seen"] - 1) < 0.2
    assert (tmp_path / "gen_model" / "config.json").exists()   # the generation job's model is saved by entropy_ps4 seed 0 (save_pretrained)
    cfg["gen_bytes"], cfg["gen_recompute_samples"] = [12], {"12": None}
    gen = bench.run_job("generation:0", cfg, prep, tmp_path)
    assert gen["by_length"]["12"]["identical"] is True
    out = bench.build_results(cfg, "smoke", prep, res + [gen], {"one": 1e9, "all": 2e9, "threads": 2}, 1.0, "python bench/blt.py --smoke")
    import importlib
    assert list(out)[:8] == ["claim", "command", "setup", "arms", "verdict", "premise", "positive_control", "notes"]
    assert "verdict_details" not in out and "cpu_count" not in out["setup"]["machine"]
    importlib.import_module("_common").check_results(out)                      # the shared schema (bench/_common.py)
    pr = out["premise"]["numbers"]["entropy_ps4"]
    assert 0 <= pr["word_start_rate_among_high_entropy"] <= 1 and pr["lift"] == pytest.approx(pr["word_start_rate_among_high_entropy"] / out["premise"]["numbers"]["word_start_rate"])
    assert out["premise"]["holds"] in (True, False) and out["positive_control"]["shows"] in (True, False)
    sp = out["premise"]["numbers"]["spans"]
    assert 0 <= sp["bytes_in_spans"] <= 1 and set(sp["global_steps_inside_spans"]) == set(prep["patchers"])
    assert "bpb_in_predictable_spans" in out["arms"]["entropy_ps4"] and set(out["positive_control"]["numbers"]["by_patch_size"]) == {"6", "8"}
    assert out["verdict"] in ("reproduced", "partial", "not reproduced")
    assert "generation_12B" in out["arms"] and out["arms"]["bpe"]["seeds"][0]["seed"] == 0
    bench.write_md(out, tmp_path / "blt.md")
    assert "| entropy_ps4 |" in (tmp_path / "blt.md").read_text()
    # a finished job is skipped on rerun: its result file is what the worker checks
    assert bench.result_path(tmp_path, "bpe:0").name == "bpe__s0.json"


def test_partial_report_with_a_patch_size_not_yet_run(bench, tmp_path):
    "The decisive run spreads over sittings: its partial report must build from one finished job, with a patch size still missing."
    cfg = json.loads(json.dumps(bench.MODES["smoke"]))
    cfg.update(steps=2, train_bytes=30_000, ngram_bytes=30_000, heldout_bytes=1_500, robust_bytes=400, patch_sizes=[4, 6])
    prep = bench.prepare(cfg, tmp_path, log=lambda m: None)
    res = bench.run_job("static_ps4:0", cfg, prep, tmp_path)
    out = bench.build_results(cfg, "smoke", prep, [res], {"one": 1e9, "all": 2e9, "threads": 2}, 1.0, "python bench/blt.py --smoke")
    assert list(out["arms"]) == ["static_ps4"] and out["arms"]["static_ps4"]["bpb"] == res["bpb"]
    assert out["verdict"] == "not reproduced"                             # no entropy arm has run: nothing is established
    bench.write_md(out, tmp_path / "blt.md")
    assert "| static_ps4 |" in (tmp_path / "blt.md").read_text()


def test_premise_numbers_by_hand(bench):
    "The premise on 'ab cd ef': word starts a, c, e (3 of 8 real bytes); high entropy before b, c and e (2 of those 3 start words)."
    from latent_lm.blt.tokenizer import ByteTokenizer
    s = torch.tensor(ByteTokenizer().encode("ab cd ef"))              # BOS a b ' ' c d ' ' e f EOS
    e = torch.zeros(len(s)); e[[1, 3, 6]] = 5.0                       # e[t] is about byte t+1: b, c, e
    out = bench.premise_numbers(s, e, {"entropy_ps4": {"mode": "entropy", "threshold": 1.0}, "static_ps4": {"mode": "static"}})
    assert out["heldout_bytes"] == 8 and out["word_start_rate"] == pytest.approx(3 / 8)
    p = out["entropy_ps4"]
    assert p["high_entropy_rate"] == pytest.approx(3 / 8) and p["word_start_rate_among_high_entropy"] == pytest.approx(2 / 3)
    assert p["lift"] == pytest.approx(16 / 9) and p["high_entropy_rate_among_word_starts"] == pytest.approx(2 / 3)
    assert "static_ps4" not in out


def test_predictable_spans_by_hand(bench):
    "'ab cd ef': every byte predictable except c (e[3] high); runs of >= 3: a b ' ' and d ' ' e f; starts 0 2 4 6 -> 2 and 6 inside."
    from latent_lm.blt.tokenizer import ByteTokenizer
    s = torch.tensor(ByteTokenizer().encode("ab cd ef"))              # BOS a b ' ' c d ' ' e f EOS
    e = torch.zeros(len(s)); e[3] = 5.0
    span = bench.predictable_spans(s, e, h_low=0.5, run_min=3)
    assert span.tolist() == [False, True, True, True, False, True, True, True, True, False]
    starts = torch.zeros(len(s), dtype=torch.bool); starts[[0, 2, 4, 6]] = True
    assert bench.steps_inside(starts, span) == pytest.approx(2 / 4)
    assert bench.predictable_spans(s, e, h_low=0.5, run_min=5).sum() == 0


def test_speed_numbers_smoke(bench):
    cfg = json.loads(json.dumps(bench.MODES["smoke"]))
    out = bench.speed_numbers(cfg, log=lambda m: None)
    for name in ("tiny", "mid"):
        for th in ("1_thread", "2_thread"):
            r = out["configs"][name][th]
            assert r["mfu"] > 0 and r["matmul_peak_flops"] > 0 and r["speedup_vs_dense_masks"] > 0
    assert out["goal_met_1_thread"] in (True, False) and out["configs"]["tiny"]["profile_top_ops_1_thread"]


@pytest.mark.parametrize("arm", ["entropy_ps4", "bpe"])
def test_job_resumes_from_checkpoint_exactly(bench, tmp_path, monkeypatch, arm):
    "A job stopped after a checkpoint goes on from it and ends exactly where an uninterrupted job ends."
    cfg = json.loads(json.dumps(bench.MODES["smoke"]))
    cfg.update(steps=5, ckpt_every=2, train_bytes=30_000, ngram_bytes=30_000, heldout_bytes=1_500, robust_bytes=400)
    prep = bench.prepare(cfg, tmp_path, log=lambda m: None)
    whole = bench.run_job(f"{arm}:0", cfg, prep, tmp_path)
    ck = bench.ckpt_path(tmp_path, arm, 0)
    ck.unlink()                                                         # the uninterrupted run left its step-4 state: start afresh
    real_save = bench.save_job_state

    def save_then_die(path, step, *a, **k):                             # the session is killed right after the step-2 checkpoint
        real_save(path, step, *a, **k)
        raise KeyboardInterrupt
    monkeypatch.setattr(bench, "save_job_state", save_then_die)
    with pytest.raises(KeyboardInterrupt): bench.run_job(f"{arm}:0", cfg, prep, tmp_path)
    assert torch.load(ck, weights_only=True)["step"] == 2
    monkeypatch.setattr(bench, "save_job_state", real_save)
    resumed = bench.run_job(f"{arm}:0", cfg, prep, tmp_path)
    assert resumed["bpb"] == whole["bpb"] and resumed["final_train_bpb"] == whole["final_train_bpb"]
    assert resumed["bytes_seen"] == whole["bytes_seen"]
    cfg["ckpt_every"] = 0                                               # quick mode: no checkpoints written
    ck.unlink(); bench.run_job(f"{arm}:0", cfg, prep, tmp_path)
    assert not ck.exists()


def test_work_folder_of_other_settings_is_refused(bench, tmp_path):
    "Finished jobs and checkpoints are reused by folder, so a folder made with other settings must not be reused."
    cfg = json.loads(json.dumps(bench.MODES["smoke"]))
    bench.refuse_other_settings(tmp_path, cfg)                          # empty folder: fine
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "workers": 7, "device": "cuda"}))
    bench.refuse_other_settings(tmp_path, cfg)                          # workers and device do not change results
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "steps": cfg["steps"] + 1}))
    with pytest.raises(SystemExit, match="differ in: steps"): bench.refuse_other_settings(tmp_path, cfg)


def _smoke_prep(bench, work):
    cfg = json.loads(json.dumps(bench.MODES["smoke"]))
    cfg.update(steps=2, train_bytes=30_000, ngram_bytes=30_000, heldout_bytes=1_500, robust_bytes=400)
    return cfg, bench.prepare(cfg, work, log=lambda m: None)


def test_store_keeps_results_across_work_folders(bench, tmp_path):
    "A finished job kept in the store is copied into a new work folder (another sitting, another machine) and not run again."
    cfg, prep = _smoke_prep(bench, tmp_path / "w1")
    store = tmp_path / "store"
    assert bench.open_store(store, cfg, prep, tmp_path / "w1") == 0
    assert json.loads((tmp_path / "w1" / "store.json").read_text())["store"] == str(store)
    res = {"arm": "bpe", "seed": 0, "bpb": 2.5}
    bench.result_path(store, "bpe:0").parent.mkdir(parents=True)
    bench.result_path(store, "bpe:0").write_text(json.dumps(res))
    _, prep2 = _smoke_prep(bench, tmp_path / "w2")                       # the same settings prepared again elsewhere
    assert bench.prep_fingerprint(prep2) == bench.prep_fingerprint(prep)
    assert bench.open_store(store, cfg, prep2, tmp_path / "w2") == 1
    assert json.loads(bench.result_path(tmp_path / "w2", "bpe:0").read_text()) == res
    assert bench.open_store(store, cfg, prep2, tmp_path / "w2") == 0     # already there: nothing copied twice
    bench.result_path(tmp_path / "w2", "space_ps4:0").write_text('{"arm": "space_ps4", "seed": 0}')   # finished here only
    bench.open_store(store, cfg, prep2, tmp_path / "w2")
    assert json.loads(bench.result_path(store, "space_ps4:0").read_text())["arm"] == "space_ps4"       # now kept too
    # a speed section kept in the store (measured by --speed, no job running) replaces one measured under the workers' load
    (tmp_path / "w2" / "speed.json").write_text('{"measured_by": "while the training jobs ran"}')
    bench.open_store(store, cfg, prep2, tmp_path / "w2")
    assert "while" in json.loads((tmp_path / "w2" / "speed.json").read_text())["measured_by"]      # the store has none: kept
    (store / "speed.json").write_text('{"measured_by": "--speed"}')
    bench.open_store(store, cfg, prep2, tmp_path / "w2")
    assert json.loads((tmp_path / "w2" / "speed.json").read_text()) == {"measured_by": "--speed"}
    # a worker's claim skips it; the other jobs are still to run
    claims = tmp_path / "w2" / "claims"; claims.mkdir()
    got = []
    while (j := bench.next_job(tmp_path / "w2", cfg, claims)) is not None: got.append(j)
    assert "bpe:0" not in got and set(got) == set(bench.jobs_for(cfg)) - {"bpe:0", "space_ps4:0"}


def test_store_refuses_other_settings_or_prepared_data(bench, tmp_path):
    cfg, prep = _smoke_prep(bench, tmp_path / "w")
    store = tmp_path / "store"
    bench.open_store(store, cfg, prep, tmp_path / "w")
    bench.open_store(store, {**cfg, "workers": 5, "device": "cuda"}, prep, tmp_path / "w")     # neither changes a result
    with pytest.raises(SystemExit, match="other settings .*differ in: steps"):
        bench.open_store(store, {**cfg, "steps": 3}, prep, tmp_path / "w")
    other = json.loads(json.dumps(prep))
    name = next(k for k, v in other["patchers"].items() if isinstance(v.get("threshold"), float))
    other["patchers"][name]["threshold"] *= 1.01
    with pytest.raises(SystemExit, match="other prepared data .*differ in: patchers"):
        bench.open_store(store, cfg, other, tmp_path / "w")
    other["patchers"][name]["threshold"] = prep["patchers"][name]["threshold"] * (1 + 1e-9)   # last-bit noise of another CPU
    bench.open_store(store, cfg, other, tmp_path / "w")


def test_generation_job_waits_for_its_model_unless_it_is_last(bench, tmp_path):
    "generation:0 needs the entropy_ps4 seed-0 model: taken once that model is saved, or as the last job (it then trains it)."
    cfg = json.loads(json.dumps(bench.MODES["smoke"]))
    jobs = bench.jobs_for(cfg)
    w = tmp_path / "w"; (w / "results").mkdir(parents=True)
    def order(run):
        c = w / f"claims_{run}"; c.mkdir()
        out = []
        while (j := bench.next_job(w, cfg, c)) is not None: out.append(j)
        return out
    assert order("a") == [j for j in jobs if not j.startswith("generation")] + ["generation:0"]
    (w / "gen_model").mkdir(); (w / "gen_model" / "config.json").write_text("{}")
    assert order("b")[0] == "generation:0"
    for j in jobs[:-1]: bench.result_path(w, j).write_text("{}")
    assert order("c") == ["generation:0"]
    bench.result_path(w, "generation:0").write_text("{}")
    assert order("d") == []


def test_smoke_run_fills_the_store_and_a_new_machine_reuses_it(tmp_path):
    "Two runs of the command in fresh work folders sharing one store: the second runs no job and reports the same arms."
    import subprocess
    run = lambda w, *more: subprocess.run([sys.executable, str(ROOT / "bench" / "blt.py"), "--smoke", "--work", str(tmp_path / w),
                                           "--store", str(tmp_path / "store"), "--out", str(tmp_path / f"out_{w}"), *more],
                                          capture_output=True, text=True, timeout=600)
    r1 = run("a")
    assert r1.returncode == 0, r1.stdout[-3000:] + r1.stderr[-3000:]
    kept = sorted(f.name for f in (tmp_path / "store" / "results").glob("*.json"))
    assert kept == sorted(f.name for f in (tmp_path / "a" / "results").glob("*.json")) and "generation__s0.json" in kept
    r2 = run("b")
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    assert f"{len(kept)} finished jobs copied" in r2.stdout and f"{len(kept)} of {len(kept)} jobs already done" in r2.stdout
    assert "[worker" not in r2.stdout
    a, b = (json.loads((tmp_path / f"out_{w}" / "blt.json").read_text()) for w in "ab")
    assert {k: v["bpb"] for k, v in a["arms"].items() if "bpb" in v} == {k: v["bpb"] for k, v in b["arms"].items() if "bpb" in v}
    assert not (tmp_path / "store" / "speed.json").exists()              # measured under the workers' load: not kept
    r3 = run("c", "--speed")                                             # measured with no job running: kept, and reported
    assert r3.returncode == 0, r3.stdout[-3000:] + r3.stderr[-3000:]
    kept_speed = json.loads((tmp_path / "store" / "speed.json").read_text())
    assert "--speed" in kept_speed["measured_by"] and len(kept_speed["loadavg_before"]) == 3
    c = json.loads((tmp_path / "out_c" / "blt.json").read_text())
    assert c["speed"] == kept_speed and "[worker" not in r3.stdout
