"""ALMA: the expected score on hand-made token probabilities, k-means against brute force, best-of-N, the round schedule
(every round's model trained from the base on D_1 and all selections so far), resume after a kill, bad input."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from latent_lm.core import LatentLMError, atomic_write_json, open_run_dir, read_jsonl, write_jsonl
from latent_lm.lm import tiny_lm, tiny_tokenizer
from latent_lm.train import save_pretrained_atomic
from latent_lm.rounds import DONE
from latent_lm.alma.data import (assign_clusters, kmeans, oracle_score, make_prompt, sample_prompt, dedupe, diversified_sample,
                                 task_spec, _rng)
from latent_lm.alma.judge import (candidate_logps, expected_score, integer_score, pairwise_accuracy, RatingJudge, TINY_JUDGE_TEMPLATE)
from latent_lm.alma.run import ALMARun, load_config, best_of_n

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "alma" / "tiny.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "LATENT_LM_QUIET": "1", "OMP_NUM_THREADS": "1"}


# ---------------------------------------------------------------- the judge's score

def test_expected_score_hand_made_probabilities():
    p = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0.05, 0.15, 0.5, 0.3])
    lp = torch.log(p.clamp(min=1e-30))
    assert float(expected_score(lp)) == pytest.approx(7 * .05 + 8 * .15 + 9 * .5 + 10 * .3)
    assert float(integer_score(lp)) == 9.0
    assert float(expected_score(lp - 5.0)) == pytest.approx(float(expected_score(lp)))     # normalised over the 11 scores
    assert float(expected_score(torch.zeros(11))) == pytest.approx(5.0)


def test_multi_token_ten_scored_as_whole_strings():
    "A byte-level 'model' where '10' is two tokens: P(10]]) = .5*.6, P(1]]) = .5*.4, P(9]]) = .5 -> expected 7.7, not 5."
    tok = tiny_tokenizer()
    B = lambda ch: tok(ch, add_special_tokens=False)["input_ids"][0]
    V = len(tok)
    T = torch.full((V, V), 1e-12); T[:, B("x")] = 1.0
    T[B("[")] = 1e-12; T[B("["), B("1")] = .5; T[B("["), B("9")] = .5
    T[B("1")] = 1e-12; T[B("1"), B("0")] = .6; T[B("1"), B("]")] = .4
    for d in "023456789": T[B(d)] = 1e-12; T[B(d), B("]")] = 1.0
    T[B("]")] = 1e-12; T[B("]"), B("]")] = 1.0
    T = T / T.sum(-1, keepdim=True)

    class Bigram(torch.nn.Module):
        def __init__(self): super().__init__(); self.w = torch.nn.Parameter(torch.zeros(1))
        def forward(self, input_ids, **kw): return SimpleNamespace(logits=T[input_ids].log())

    lp = candidate_logps(Bigram(), tok, ["Rating: [[", "x [["], batch_size=11)
    probs = torch.softmax(lp, -1)
    assert probs[0, 10].item() == pytest.approx(0.3, abs=1e-6) and probs[0, 1].item() == pytest.approx(0.2, abs=1e-6)
    assert expected_score(lp).tolist() == pytest.approx([7.7, 7.7], abs=1e-5)


def test_rating_judge_real_and_integer_and_compare():
    m, tok = tiny_lm(d_model=32, n_layers=1)
    j = RatingJudge(m, tok, TINY_JUDGE_TEMPLATE)
    p, r = [make_prompt(3, "b")] * 2, ["bat, bee, bus", "cat"]
    s = j.score_all(p, r)
    assert len(s["real"]) == 2 and all(0 <= x <= 10 for x in s["real"]) and all(x == int(x) for x in s["integer"])
    assert [sum(q) for q in s["probs"]] == pytest.approx([1.0, 1.0])
    assert j.score(p, r) == s["real"]
    assert RatingJudge(m, tok, TINY_JUDGE_TEMPLATE, mode="integer").score(p, r) == s["integer"]
    v = j.compare(p[:1], r[:1], r[1:])[0]
    assert v.winner == ("A" if s["real"][0] > s["real"][1] else "B")
    with pytest.raises(LatentLMError, match="mode"): RatingJudge(m, tok, mode="median")


def test_pairwise_accuracy_ties_count_half():
    r = pairwise_accuracy([5, 5, 9], [5, 3, 2], [1, 7, 8], [2, 7, 1])   # pair 2 has equal gold: skipped
    assert r == {"accuracy": 0.75, "tie_rate": 0.5, "n_pairs": 2}


# ---------------------------------------------------------------- data

def test_kmeans_assignment_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(80, 5, generator=g)
    c, a = kmeans(x, 7, seed=2)
    brute = [min(range(7), key=lambda j: float(((x[i] - c[j]) ** 2).sum())) for i in range(80)]
    assert a.tolist() == brute                                # converged: every point sits with its nearest centroid
    for j in range(7): assert torch.allclose(c[j], x[a == j].mean(0), atol=1e-5)
    assert assign_clusters(x, c).tolist() == brute


def test_oracle_dedupe_and_diversified_sampling():
    p = make_prompt(4, "c", 2, "Ada")
    assert task_spec(p) == (4, "c")
    assert oracle_score(p, "cat, cow, cup, car") == 10 and oracle_score(p, "cat, dog") == pytest.approx(2.5)
    assert dedupe(["a b c", "A  b c.", "a b d"], threshold=1.0) == [0, 2]
    clusters = [0] * 20 + [1, 2, 3]
    assert sorted(clusters[i] for i in diversified_sample(clusters, used=[], k=4, seed=0)) == [0, 1, 2, 3]


def test_best_of_n_picks_judge_max_and_dpo_rejects_random():
    rows = [{"key": "k", "prompt": "p\n", "text": t, "judge_score": s, "oracle": o, "checkpoint": "c"}
            for t, s, o in [("a", 1.0, 0.0), ("b", 9.5, 7.0), ("c", 9.0, 10.0)]]
    sel, st = best_of_n(rows)
    assert sel[0]["completion"] == "b" and st["oracle_best_of_n"] == 10.0 and st["selected_oracle"] == 7.0
    rej = {best_of_n(rows, seed=s, method="dpo")[0][0]["rejected"] for s in range(30)}
    assert rej == {"a", "c"}


# ---------------------------------------------------------------- the loop (shared stages prepared as tiny untrained models)

SMALL = {"rounds": 2, "seed": 0,
         "task": {"n_seed_sft": 12, "n_seed_judge": 8, "n_pool": 16, "n_prompts": 4, "n_clusters": 4, "n_test": 6, "n_judge_pairs": 8},
         "base": {"d_model": 32, "n_layers": 1, "n_heads": 4, "n_docs": 10, "epochs": 1},
         "sft": {"lr": 1e-3, "epochs": 1, "batch_size": 8, "checkpoint": False},
         "sampling": {"k": 4, "max_new_tokens": 8, "batch_size": 64, "temperatures": [0.7, 1.0]},
         "judge": {"epochs": 1, "self_distill": 0, "batch": 64},
         "eval": {"k": 1}}


def prepare_shared(shared: Path, cfg) -> None:
    "The shared stages as already finished: tiny untrained models with done markers, and a pool of prompts with clusters."
    with open_run_dir(shared, {"shared": cfg.shared_fingerprint()}):
        for i, name in enumerate(["base", "sft_0", "sft_1", "judge"]):
            m, tok = tiny_lm(d_model=32, n_layers=1, seed=i)
            save_pretrained_atomic(shared / name / "model", m, tok)
            atomic_write_json(shared / name / "model" / DONE, {"prepared": True})
        rng = _rng(0, "pool-test")
        pool = [{"key": f"synth-{i}", "prompt": sample_prompt(rng), "cluster": i % 4} for i in range(16)]
        write_jsonl(shared / "pool.jsonl", pool); atomic_write_json(shared / "pool.jsonl.done", {"records": 16})


def small_config(tmp_path, **kw):
    d = json.loads(json.dumps(SMALL)); d.update(run_dir=str(tmp_path / "run"), shared_dir=str(tmp_path / "shared"), **kw)
    return d


def test_round_schedule_retrains_from_base_on_all_data_so_far(tmp_path, monkeypatch):
    import latent_lm.alma.run as R
    d = small_config(tmp_path)
    cfg = load_config(d); prepare_shared(tmp_path / "shared", cfg)
    calls = []
    real = R.train_round
    def spy(model_path, records, out_dir, c, kind="sft", **kw):
        calls.append((str(model_path), [dict(r) for r in records], kind)); return real(model_path, records, out_dir, c, kind=kind, **kw)
    monkeypatch.setattr(R, "train_round", spy)
    s = R.run_alma(d)
    base = str(tmp_path / "shared" / "base" / "model")
    assert [c[0] for c in calls] == [base, base] and all(c[2] == "sft" for c in calls)
    d1 = [{"prompt": r["prompt"], "completion": r["completion"]} for r in R.seed_sft_data(12, 0, cfg.task.seed_quality)]
    sel = [[{"prompt": r["prompt"], "completion": r["completion"]} for r in read_jsonl(tmp_path / "run" / f"round_{k}" / "selected.jsonl")] for k in range(2)]
    assert calls[0][1] == d1 + sel[0]                          # round 2: D1 u D2
    assert calls[1][1] == d1 + sel[0] + sel[1]                 # round 3: D1 u D2 u D3, again from the base
    for k in range(2):
        done = json.loads((tmp_path / "run" / f"round_{k}" / "model" / DONE).read_text())
        assert done["trained_from"] == base and done["data_rounds"] == list(range(k + 1)) and done["n_records"] == 12 + 4 * (k + 1)
    assert [m["model"] for m in s["models"]] == ["M1", "M2", "M3"]
    # the checkpoints that answered: round 0 (paper's round 2) only the two SFT models; round 1 the SFT models and M2
    g0 = {r["checkpoint"] for r in read_jsonl(tmp_path / "run" / "round_0" / "generations.jsonl")}
    g1 = {r["checkpoint"] for r in read_jsonl(tmp_path / "run" / "round_1" / "generations.jsonl")}
    assert g0 == {"sft_0", "sft_1"} and g1 == {"sft_0", "sft_1", "round_0"}
    # prompts are never reused across rounds, and a round's prompts come from distinct clusters
    p0, p1 = (read_jsonl(tmp_path / "run" / f"round_{k}" / "prompts.jsonl") for k in range(2))
    assert not {p["key"] for p in p0} & {p["key"] for p in p1} and len({p["cluster"] for p in p0}) == 4


def test_dpo_variant_trains_from_seed_sft_on_all_pairs(tmp_path, monkeypatch):
    import latent_lm.alma.run as R
    d = small_config(tmp_path, method="dpo"); d["rounds"] = 2
    cfg = load_config(d); prepare_shared(tmp_path / "shared", cfg)
    calls = []
    real = R.train_round
    monkeypatch.setattr(R, "train_round", lambda m, recs, out, c, kind="sft", **kw: (calls.append((str(m), len(recs), kind)), real(m, recs, out, c, kind=kind, **kw))[1])
    R.run_alma(d)
    sft0 = str(tmp_path / "shared" / "sft_0" / "model")
    assert calls == [(sft0, 4, "dpo"), (sft0, 8, "dpo")]
    pairs = read_jsonl(tmp_path / "run" / "round_0" / "selected.jsonl")
    assert all(p["chosen"] is not None and "rejected" in p for p in pairs)


def _artifacts(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and p.suffix in (".jsonl", ".json", ".safetensors")
            and p.name not in ("summary.json",) and "figures" not in p.parts and not p.name.startswith(".")}


def test_stopped_run_resumes_at_first_unfinished_step(tmp_path, capsys):
    "Kill -9 the CLI once round 0's responses are judged; the rerun keeps round 0's records and ends identical to an uninterrupted run."
    import yaml
    from test_rounds import cli
    for name in ("a", "b"):
        d = small_config(tmp_path / name); cfg = load_config(d); prepare_shared(tmp_path / name / "shared", cfg)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(d))
    rc, out, err = cli(["alma", "run", "--config", tmp_path / "a.yaml", "--json"], capsys)     # the reference, in this process
    assert rc == 0, err[-2000:]
    ref = _artifacts(tmp_path / "a" / "run")
    from test_rounds import forked_cli                             # the killed run and its resumption: forked from this warm process
    start = forked_cli(["alma", "run", "--config", tmp_path / "b.yaml", "--json"], tmp_path / "logs", warm=[tmp_path / "b" / "shared" / "base" / "model"])
    p = start()
    run = tmp_path / "b" / "run"
    t0 = time.time()
    while not (run / "round_0" / "scores.jsonl").exists() or not (run / "round_0" / "selected.jsonl.done").exists():
        assert p.poll() is None, p.communicate()[1][-2000:]
        assert time.time() - t0 < 600
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (run / "summary.json").exists()
    kept = {k: (run / k).read_bytes() for k in ("round_0/generations.jsonl", "round_0/scores.jsonl", "round_0/prompts.jsonl")}
    mtimes = {k: (run / k).stat().st_mtime_ns for k in kept}
    r = start(); out2, err2 = r.communicate(timeout=600)
    assert r.returncode == 0, err2[-2000:]
    assert {k: (run / k).stat().st_mtime_ns for k in kept} == mtimes        # finished records were not redone
    got = _artifacts(run)
    assert sorted(got) == sorted(ref)
    same = lambda k: got[k].replace(str(tmp_path / "b").encode(), b"X") == ref[k].replace(str(tmp_path / "a").encode(), b"X")
    assert [k for k in ref if not same(k)] == []            # identical up to the run's own folder name
    assert [m["greedy_oracle"] for m in json.loads(out2)["models"]] == [m["greedy_oracle"] for m in json.loads(out)["models"]]


BAD = [(["--sampling.checkpoints", "all"], "sampling.checkpoints"), (["--judge.score", "median"], "judge.score"),
       (["--task.prompt_sampling", "greedy"], "task.prompt_sampling"), (["--rounds", "0"], "rounds"),
       (["--sampling.k", "1"], "sampling.k"), (["--task.n_pool", "10"], "task.n_clusters"), (["--method", "ppo"], "method"),
       (["--judge.bogus", "1"], "judge.bogus"), (["--base.d_model", "30"], "divisible"), (["--sft.lr", "-1"], "sft.lr")]


@pytest.mark.parametrize("extra,needle", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_input_exit_2_names_the_field_writes_nothing(tmp_path, capsys, extra, needle):
    from test_rounds import check_rejected
    check_rejected(["alma", "run", "--config", TINY, "--run_dir", tmp_path / "run", *extra], needle, tmp_path / "run", capsys)


def test_bad_config_file_exit_2(tmp_path, capsys):
    from test_rounds import cli
    (tmp_path / "bad.yaml").write_text("task:\n  n_promts: 3\n")
    rc, out, err = cli(["alma", "run", "--config", tmp_path / "bad.yaml", "--run_dir", tmp_path / "r"], capsys)
    assert rc == 2 and "n_promts" in err and not (tmp_path / "r").exists()


def test_judge_save_load_roundtrip(tmp_path):
    m, tok = tiny_lm(d_model=32, n_layers=1)
    save_pretrained_atomic(tmp_path / "j", m, tok)
    a = RatingJudge(m, tok, TINY_JUDGE_TEMPLATE).score([make_prompt(2, "a")], ["ant, arm"])
    b = RatingJudge.from_pretrained(tmp_path / "j", template=TINY_JUDGE_TEMPLATE).score([make_prompt(2, "a")], ["ant, arm"])
    assert a == pytest.approx(b, abs=1e-5)
    assert list((tmp_path / "j").glob("*.safetensors"))
