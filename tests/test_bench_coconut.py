"bench/coconut.py's ProsQA reference levels: the exact random-walk accuracy against a hand computation and a simulation."
import importlib.util, random, statistics, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_coconut", ROOT / "bench" / "coconut.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rec(edges, root, target, neg, hops):
    return {"edges": edges, "root": root, "target": target, "neg_target": neg, "steps": ["s"] * hops,
            "idx_to_symbol": [f"n{i}" for i in range(1 + max(max(e) for e in edges))]}


def test_walk_levels_by_hand(bench):
    # root 0 -> {1, 2}; 1 -> target 3; 2 is a dead end (a guess: 1/2); neg target 4 hangs off nothing reachable
    r = _rec([[0, 1], [0, 2], [1, 3], [5, 4]], 0, 3, 4, 2)
    w = bench.walk_levels([r])
    assert w["random_valid_walk"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert w["walk_avoiding_dead_ends"] == pytest.approx(1.0)          # one step of lookahead skips node 2
    # root -> {1, 2}; 1 -> target, 2 -> neg target: a coin flip without lookahead, and lookahead does not help
    r2 = _rec([[0, 1], [0, 2], [1, 3], [2, 4]], 0, 3, 4, 2)
    w2 = bench.walk_levels([r2])
    assert w2["random_valid_walk"] == pytest.approx(0.5) and w2["walk_avoiding_dead_ends"] == pytest.approx(0.5)


def test_walk_levels_match_a_simulation(bench):
    from latent_lm.coconut.data import make_prosqa, load_coconut_json, children_of
    recs = load_coconut_json(make_prosqa(40, seed=3, n_nodes=9, min_hops=2, max_hops=2))
    rng = random.Random(0)
    def walk(r):
        ch, u = children_of(r["edges"], len(r["idx_to_symbol"])), r["root"]
        for _ in range(len(r["steps"])):
            if u in (r["target"], r["neg_target"]) or not ch[u]: break
            u = rng.choice(ch[u])
        return 1.0 if u == r["target"] else 0.0 if u == r["neg_target"] else float(rng.random() < 0.5)
    sim = statistics.mean(walk(r) for r in recs for _ in range(400))
    exact = bench.walk_levels(recs)["random_valid_walk"]
    assert abs(sim - exact) < 0.02, (sim, exact)                        # 16,000 walks: s.e. about 0.004
    assert 0.5 < exact < 1.0


def test_finished_runs_are_reused_only_with_the_same_settings(bench, tmp_path, monkeypatch):
    h = bench.run_settings("prosqa_cot", "full")
    assert h == bench.run_settings("prosqa_cot", "full")                        # stable
    assert h != bench.run_settings("prosqa_cot", "smoke") and h != bench.run_settings("prosqa_coconut", "full")
    cfg = tmp_path / "prosqa.yaml"                                               # the same config with a wider model
    cfg.write_text(bench.PROSQA_CONFIG.read_text().replace("d_model: 128", "d_model: 256"))
    monkeypatch.setattr(bench, "PROSQA_CONFIG", cfg)
    assert bench.run_settings("prosqa_cot", "full") != h


def test_store_keeps_runs_across_work_folders(bench, tmp_path, monkeypatch):
    "A kept result with this mode and these settings is copied into a new work folder; one made with other settings is not."
    import json
    store, work = tmp_path / "store", tmp_path / "work"
    store.mkdir()
    good = {"arm": "cot", "seed": 1, "acc": 0.9, "mode": "full", "settings": bench.run_settings("cot", "full")}
    stale = {**good, "arm": "no_cot", "settings": "an older hash"}
    bench.store_file(store, "cot", 1).write_text(json.dumps(good))
    bench.store_file(store, "no_cot", 1).write_text(json.dumps(stale))
    n, old = bench.import_store(store, work, [("cot", 1), ("no_cot", 1), ("coconut", 1)], "full")
    assert n == 1 and old == ["no_cot_s1.json"]
    assert json.loads((work / "cot_s1" / "result.json").read_text()) == good and not (work / "no_cot_s1").exists()
    assert bench.import_store(store, work, [("cot", 1)], "full") == (0, [])            # already there
    mine = {**good, "arm": "coconut"} | {"settings": bench.run_settings("coconut", "full")}
    (work / "coconut_s2").mkdir(); (work / "coconut_s2" / "result.json").write_text(json.dumps(mine))   # finished here only
    assert bench.import_store(store, work, [("coconut", 2)], "full") == (0, [])
    assert json.loads(bench.store_file(store, "coconut", 2).read_text()) == mine                       # now kept too
    assert bench.import_store(store, tmp_path / "w2", [("cot", 1)], "quick") == (0, ["cot_s1.json"])             # other mode
    # a finished run goes into the store named in the work folder
    (work / "pause_s0").mkdir(); (work / "pause_s0" / "result.json").write_text('{"acc": 0.5}')
    bench.keep_in_store(work, "pause", 0)                                               # no store.json: nothing kept
    assert not bench.store_file(store, "pause", 0).exists()
    (work / "store.json").write_text(json.dumps({"store": str(store)}))
    bench.keep_in_store(work, "pause", 0)
    assert json.loads(bench.store_file(store, "pause", 0).read_text()) == {"acc": 0.5}


def test_weights_of_a_kept_run_are_trained_again(bench, tmp_path, monkeypatch):
    "The analysis needs seed-0 weights: a run whose result came from the store is trained again here, once, and reported."
    work, calls = tmp_path, []
    def fake_run_one(arm, seed, mode, out):
        calls.append((arm, seed, mode, out.name))
        (out / "hf_model").mkdir(parents=True); (out / "hf_model" / "coconut.json").write_text("{}")
    monkeypatch.setattr(bench, "run_one", fake_run_one)
    assert bench.trained_model(work, "coconut", "full") == work / "coconut_s0" / "hf_model" and calls == []   # not run at all
    (work / "coconut_s0").mkdir(); (work / "coconut_s0" / "result.json").write_text("{}")
    got = []
    assert bench.trained_model(work, "coconut", "full", got) == work / "coconut_s0_weights" / "hf_model"
    assert calls == [("coconut", 0, "full", "coconut_s0_weights")] and got == ["coconut_s0"]
    bench.trained_model(work, "coconut", "full", got)
    assert len(calls) == 1                                                              # trained once
    (work / "prosqa_coconut_s0" / "hf_model").mkdir(parents=True)                       # trained in this work folder
    (work / "prosqa_coconut_s0" / "hf_model" / "coconut.json").write_text("{}"); (work / "prosqa_coconut_s0" / "result.json").write_text("{}")
    assert bench.trained_model(work, "prosqa_coconut", "full") == work / "prosqa_coconut_s0" / "hf_model" and len(calls) == 1


def test_cot_curve_first_step_by_hand():
    "bench/coconut_cot_curve.py: where a chain's first step goes, and the random-child level, on a graph checked by hand."
    spec = importlib.util.spec_from_file_location("bench_cot_curve", ROOT / "bench" / "coconut_cot_curve.py")
    cc = importlib.util.module_from_spec(spec); spec.loader.exec_module(cc)
    # root Tom (0) -> a (1) -> x (3, the target); Tom -> b (2) -> y (4, the other option); Ann (5) -> a
    rec = {"idx_to_symbol": ["Tom", "a", "b", "x", "y", "Ann"], "edges": [[0, 1], [0, 2], [1, 3], [2, 4], [5, 1]],
           "root": 0, "target": 3, "neg_target": 4, "steps": ["s", "s"]}
    assert cc.first_step(rec, "Tom is a a.\nEvery a is a x.\n### Tom is a x.") == "on path"
    assert cc.first_step(rec, "Tom is a b. Every b is a y. ### Tom is a y.") == "off path"
    assert cc.first_step(rec, "Tom is a x. ### Tom is a x.") == "not an edge"          # skips a step: no such edge
    assert cc.first_step(rec, "Ann is a a. Every a is a x.") == "not an edge"          # an edge, but not from the root
    assert cc.first_step(rec, "### Tom is a x.") == "no step"
    got = cc.random_first_step([rec, {**rec, "edges": [[0, 1], [1, 3], [0, 2], [2, 3]]}])
    assert got == {"first_step_on_path_random_child": (0.5 + 1.0) / 2, "root_children_mean": 2.0, "root_with_one_child": 0.0}
