"Coconut data: the official JSON format, the generators, the tokenizer and the answer check."
import json
import numpy as np
import pytest
from latent_lm.core import LatentLMError
from latent_lm.coconut.data import (
    load_coconut_json, save_coconut_json, make_prosqa, make_symbolic_prosqa, relabel_symbolic, make_prontoqa, make_arithmetic,
    prosqa_stats, PROSQA_RELEASED, bfs_dist, count_shortest_paths, steps_to_path, symbolic_tokenizer, word_tokenizer,
    symbolic_vocab, check_vocab, extract_answer, answer_correct, START_LATENT, LATENT, END_LATENT)


def test_roundtrip_and_idx(tmp_path):
    recs = make_prosqa(5, seed=1) + make_prontoqa(3) + make_arithmetic(3) + [{"question": "q?", "steps": [], "answer": "a"}]
    p = save_coconut_json(tmp_path / "x.json", recs)
    back = load_coconut_json(p)
    assert [r["idx"] for r in back] == list(range(len(recs)))
    assert [{k: v for k, v in r.items() if k != "idx"} for r in back] == recs
    assert "idx" not in json.loads(p.read_text())[0]


@pytest.mark.parametrize("data,msg", [
    ("not a list", "JSON list"),
    ([], "empty list"),
    ([{"question": "q", "steps": ["s"]}], "no 'answer'"),
    ([{"question": " ", "steps": ["s"], "answer": "a"}], "'question' must be a non-empty string"),
    ([{"question": "q", "steps": "s", "answer": "a"}], "'steps' must be a list"),
    ([{"question": "q", "steps": [3], "answer": "a"}], "step 0"),
    ([{"question": "q", "steps": [], "answer": "a", "root": 0}], "lacks"),
    ([{"question": "q", "steps": [], "answer": "a", "idx_to_symbol": ["x"], "edges": [], "root": 0, "target": 3, "neg_target": 0}], "'target'"),
])
def test_bad_records(data, msg):
    with pytest.raises(LatentLMError, match=msg): load_coconut_json(data)


def test_bad_file(tmp_path):
    (tmp_path / "latin1.json").write_bytes('[{"question": "Ist Jörg ein wumpus?", "steps": [], "answer": "ja"}]'.encode("latin-1"))
    with pytest.raises(LatentLMError, match="not UTF-8"): load_coconut_json(tmp_path / "latin1.json")
    (tmp_path / "a.jsonl").write_text('{"question": "q", "steps": [], "answer": "a"}\n{"question": "r", "steps": [], "answer": "b"}\n')
    with pytest.raises(LatentLMError, match="not JSONL"): load_coconut_json(tmp_path / "a.jsonl")
    with pytest.raises(LatentLMError, match="not found"): load_coconut_json(tmp_path / "missing.json")


def test_prosqa_calibrated_to_released():
    st = prosqa_stats(make_prosqa(600, seed=123))
    assert abs(st["n_nodes_mean"] - PROSQA_RELEASED["n_nodes_mean"]) < 1.0
    assert abs(st["n_edges_mean"] - PROSQA_RELEASED["n_edges_mean"]) < 2.0
    assert abs(st["hops_mean"] - PROSQA_RELEASED["hops_mean"]) < 0.2
    assert abs(st["n_shortest_mean"] - PROSQA_RELEASED["n_shortest_mean"]) < 0.2
    assert set(st["hops"]) <= {3, 4, 5, 6} and st["n_nodes_range"][1] <= 28


def test_prosqa_semantics():
    for r in make_prosqa(60, seed=7):
        n = len(r["idx_to_symbol"]); d = bfs_dist(r["edges"], r["root"], n)
        assert d[r["neg_target"]] == -1 and d[r["target"]] == len(r["steps"])
        assert not any(u == r["target"] for u, _ in r["edges"])                          # the target is a leaf
        # the target is the farthest exclusive leaf of the root
        leaves = {v for v in range(n) if not any(u == v for u, _ in r["edges"])}
        assert d[r["target"]] == max(d[v] for v in leaves if d[v] >= 0 and v not in _reach_from_other(r))
        path = steps_to_path(r)
        assert all([u, v] in r["edges"] for u, v in zip(path, path[1:]))
        assert count_shortest_paths(r["edges"], r["root"], r["target"], n) >= 1
        q = r["question"]
        names = r["idx_to_symbol"]
        assert q.endswith(f"a {names[r['target']]} or {names[r['neg_target']]}?") or q.endswith(f"a {names[r['neg_target']]} or {names[r['target']]}?")


def _reach_from_other(r):
    "Nodes reachable from the seed that reaches the negative (the other seed is 0 or 1)."
    other = 1 - r["root"] if r["root"] in (0, 1) else None
    return {i for i, x in enumerate(bfs_dist(r["edges"], other, len(r["idx_to_symbol"]))) if x >= 0}


def test_determinism_and_seed():
    assert make_prosqa(4, seed=3) == make_prosqa(4, seed=3)
    assert make_symbolic_prosqa(4, seed=3) != make_symbolic_prosqa(4, seed=4)
    assert make_prontoqa(3, seed=1)[:2] == make_prontoqa(2, seed=1)
    assert make_arithmetic(3, seed=1) == make_arithmetic(3, seed=1)


def test_symbolic_tokenizer_and_relabel(tmp_path):
    recs = make_symbolic_prosqa(300, seed=0, n_nodes=12, min_hops=3, max_hops=4)
    tok = symbolic_tokenizer(12)
    check_vocab(tok, recs)
    rng = np.random.default_rng(0)
    for r in recs[:50]:
        r2 = relabel_symbolic(r, rng)
        assert steps_to_path(r2) == steps_to_path(r) and r2["answer"] == r2["idx_to_symbol"][r["target"]]
        inv = {s: i for i, s in enumerate(r2["idx_to_symbol"])}       # edge tokens decode to the same graph
        assert sorted([inv["n" + a], inv["n" + b]] for a, b in (w[1:].split("_") for w in r2["question"].split()[:-5])) == sorted(r["edges"])
    assert sum(relabel_symbolic(recs[0], rng)["idx_to_symbol"] != recs[0]["idx_to_symbol"] for _ in range(5)) >= 4
    ids = tok(recs[0]["question"] + START_LATENT + LATENT + END_LATENT)["input_ids"]
    assert ids[-3:] == tok.convert_tokens_to_ids([START_LATENT, LATENT, END_LATENT])
    tok.save_pretrained(tmp_path / "tok")
    from transformers import AutoTokenizer
    t2 = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert t2(recs[1]["question"])["input_ids"] == tok(recs[1]["question"])["input_ids"] and len(t2) == len(tok)
    with pytest.raises(LatentLMError, match="not in the tokenizer"): check_vocab(symbolic_tokenizer(5), recs)
    with pytest.raises(LatentLMError, match="at least one word"): word_tokenizer([])
    assert len(symbolic_vocab(4, edge_tokens=False)) == 2 + 4 + 1


def test_arithmetic_comes_from_the_tasks_layer():
    "Coconut's arithmetic records are the tasks layer's problems in the question/steps/answer format, steps as GSM8k-Aug equations."
    from latent_lm.tasks import arithmetic_problems
    for r, p in zip(make_arithmetic(20, seed=4, min_steps=1, max_steps=3), arithmetic_problems(20, seed=4, n_steps=(1, 3))):
        assert r["question"] == p["question"] and r["answer"] == str(p["answer"])
        assert r["steps"] == ["<<" + s.replace(" ", "") + ">>" for s in p["steps"]]
        assert answer_correct(f"{r['steps'][-1]}\n### {r['answer']}", r["answer"])
    assert load_coconut_json(make_arithmetic(3))


def test_generator_bad_settings():
    with pytest.raises(LatentLMError, match="min_hops"): make_prosqa(1, min_hops=4, max_hops=3)
    with pytest.raises(LatentLMError, match="too strict"): make_symbolic_prosqa(1, n_nodes=5, min_hops=6, max_hops=6)
    with pytest.raises(LatentLMError, match="min_steps"): make_arithmetic(2, min_steps=0)


def test_answer_check():
    assert extract_answer("a\nb ### Tom is a lempus. ") == "Tom is a lempus"          # the shared extractor's normal form
    assert answer_correct("a\nb ### Tom is a lempus. ", "Tom is a lempus.") and not answer_correct("### Tom is a yumpus.", "Tom is a lempus.")
    assert answer_correct("### 1,000", "1000") and answer_correct("#1000", "1,000")
    assert not answer_correct("### n3", "n31")


def test_pointer_chase_control_by_brute_force():
    from latent_lm.coconut.data import make_pointer_chase, steps_to_path, load_coconut_json
    recs = load_coconut_json(make_pointer_chase(200, seed=4, n_nodes=12, hops=3))
    for r in recs:
        nxt = dict((u, v) for u, v in r["edges"]); n = len(r["idx_to_symbol"])
        assert sorted(nxt) == list(range(n))                                    # one successor per node
        walk = [r["root"]]
        for _ in range(3): walk.append(nxt[walk[-1]])
        assert walk == steps_to_path(r) and walk[-1] == r["target"] and len(set(walk)) == 4
        assert r["neg_target"] not in walk
        assert any(v != r["root"] and nxt[nxt[nxt[v]]] == r["neg_target"] for v in range(n))   # the negative ends another 3-step chain
        q = r["question"].split()
        assert q[-1] == r["idx_to_symbol"][r["root"]] and {q[-4], q[-3]} == {r["idx_to_symbol"][r["target"]], r["idx_to_symbol"][r["neg_target"]]}
    first = sum(r["question"].split("[Q] ")[1].split()[0] == r["answer"] for r in recs) / len(recs)
    assert 0.35 < first < 0.65                                                  # the answer's position gives nothing away
