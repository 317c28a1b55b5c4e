"""Thought Preference Optimization: parsing, the judge never sees a thought, length control by hand, pair choice,
ELO, the CLI on the tiny config (shrunk), bad input (exit 2, nothing written), and resume after kills."""
import json, math, os, shutil, subprocess, sys
from pathlib import Path

import pytest

from latent_lm.core import LatentLMError, read_jsonl
from latent_lm.judge import Judge, CallableJudge
from latent_lm.thought.core import (thought_prompt, format_output, parse_output, ParsedOutput, judge_responses, normalize,
                                    length_controlled, select_pair, make_pair, elo_scores, battle_matrix, pairwise_scores,
                                    LengthBiasedJudge, seed_records, GENERIC_PROMPT, SPECIFIC_PROMPT)
from latent_lm.thought.run import load_config, ThoughtArm, ScratchJudge
from latent_lm.tasks import scratch_problem, scratch_problems, check_scratch, check_steps

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "thought" / "tiny.yaml"


# ---------------------------------------------------------------- prompts and parsing

def test_prompts_are_the_papers():
    assert GENERIC_PROMPT.startswith("Respond to the following user query in a comprehensive and detailed way. You can write down")
    assert 'Write your thoughts after "Here is my thought process:" and write your response after "Here is my response:".' in GENERIC_PROMPT
    assert "This must include your draft response and its evaluation." in SPECIFIC_PROMPT
    assert thought_prompt("Q?").endswith("\n\nUser query: Q?") and thought_prompt("Q?", "direct") == "Q?"


@pytest.mark.parametrize("text,kind,expected", [
    ("Here is my thought process: 1 + 2 = 3\nHere is my response: #### 3", "generic", ParsedOutput("1 + 2 = 3", "#### 3")),
    ("Here is my response: #### 3", "generic", ParsedOutput("", "#### 3")),
    ("<internal thought> draft 3, fine <response> 3", "specific", ParsedOutput("draft 3, fine", "3")),
    (" #### 3\n", "direct", ParsedOutput("", "#### 3")),
])
def test_parse_wellformed(text, kind, expected):
    assert parse_output(text, kind) == expected


@pytest.mark.parametrize("text,kind,error", [
    ("Here is my thought process: 1 + 2 = 3 #### 3", "generic", "no response marker"),
    ("Here is my response: 3\nHere is my response: 4", "generic", "response marker repeated"),
    ("Here is my thought process: x\nHere is my response: \n ", "generic", "empty response"),
    ("Here is my response: 3", "specific", "no response marker"),
    ("", "generic", "no response marker"),
    ("   ", "direct", "empty response"),
])
def test_parse_malformed_is_counted_not_raised(text, kind, error):
    p = parse_output(text, kind)
    assert not p.ok and p.error == error and p.response == ""


def test_roundtrip_format_parse():
    for kind in ("generic", "specific"):
        assert parse_output(format_output("a = 1, b = 2", "#### 3", kind), kind) == ParsedOutput("a = 1, b = 2", "#### 3")


# ---------------------------------------------------------------- the judge sees the response alone

class MarkerAlarmJudge(Judge):
    "Fails the test if any trace of a thought (marker, thought text, thought prompt) reaches it."
    def __init__(self): self.seen = []
    def score(self, prompts, responses):
        for x in list(prompts) + list(responses):
            for bad in ("Here is my thought process", "Here is my response", "<internal thought>", "SECRET-THOUGHT", "Respond to the following"):
                assert bad not in x, f"the judge was shown {bad!r}: {x!r}"
        self.seen += list(zip(prompts, responses))
        return [float("7" in r) for r in responses]


def test_alarm_judge_fires_on_a_thought():
    with pytest.raises(AssertionError, match="the judge was shown"):
        MarkerAlarmJudge().score([thought_prompt("What is 3 + 4?")], ["#### 7"])
    with pytest.raises(AssertionError, match="the judge was shown"):
        MarkerAlarmJudge().score(["What is 3 + 4?"], [format_output("SECRET-THOUGHT", "#### 7")])


def test_judge_responses_hides_thoughts():
    j = MarkerAlarmJudge()
    outs = [parse_output(format_output("SECRET-THOUGHT 3 + 4 = 7", "#### 7")), parse_output("SECRET-THOUGHT only"),
            parse_output(format_output("SECRET-THOUGHT", "#### 8"))]
    assert judge_responses(j, ["What is 3 + 4?"] * 3, outs) == [1.0, None, 0.0]
    assert j.seen == [("What is 3 + 4?", "#### 7"), ("What is 3 + 4?", "#### 8")]


def test_score_stage_of_the_loop_hides_thoughts(tmp_path):
    "The loop's own score stage, on hand-made generations: the judge gets the instruction and the response only."
    cfg = load_config({"run_dir": str(tmp_path / "r"), "task": {"n_test": 2, "n_train": 2}})
    j = MarkerAlarmJudge()
    arm = ThoughtArm(cfg, "thought", tmp_path / "r", "unused", judge=j)
    q = "What is 3 + 4?"
    gens = [{"key": "k", "sample": i, "prompt": thought_prompt(q), "instruction": q, "task": "sums", "gold": 7, "text": t}
            for i, t in enumerate([format_output("SECRET-THOUGHT 3 + 4 = 7", "#### 7"), "SECRET-THOUGHT no marker",
                                   format_output("SECRET-THOUGHT", "#### 8")])]
    sc = arm.score("unused", gens)
    assert [r["score"] for r in sc] == [1.0, None, 0.0] and [r["ok"] for r in sc] == [True, False, True]
    assert all(p == q for p, _ in j.seen) and [r for _, r in j.seen] == ["#### 7", "#### 8"]
    (tmp_path / "r" / "thought" / "round_0").mkdir(parents=True)
    pairs = arm.select(sc, 0)
    assert len(pairs) == 1 and pairs[0]["chosen"] == gens[0]["text"] and pairs[0]["rejected"] == gens[1]["text"]   # malformed = rejected
    assert pairs[0]["prompt"] == thought_prompt(q)                     # the thought prompt stays in the training prompt


def test_scratch_judge_needs_the_bare_instruction():
    q = "What is 3 + 4?"
    assert ScratchJudge({q: 7}).score([q, q], ["#### 7", "The answer is 7.\n#### 8"]) == [1.0, 0.0]
    with pytest.raises(LatentLMError, match="no gold answer"):
        ScratchJudge({q: 7}).score([thought_prompt(q)], ["#### 7"])


# ---------------------------------------------------------------- length control and pairs, by hand

def test_length_control_hand_computed():
    # scores (1, 0, 1, 0): mean 1/2, population std 1/2 -> (1, -1, 1, -1); lengths (10, 20, 40, 50): mean 30, std sqrt(250)
    sd = math.sqrt((400 + 100 + 100 + 400) / 4)
    ln = [(10 - 30) / sd, (20 - 30) / sd, (40 - 30) / sd, (50 - 30) / sd]
    got = length_controlled([1, 0, 1, 0], [10, 20, 40, 50], rho=0.3)
    assert got == pytest.approx([1 - 0.3 * ln[0], -1 - 0.3 * ln[1], 1 - 0.3 * ln[2], -1 - 0.3 * ln[3]])
    assert got == pytest.approx([1.3794733, -0.8102633, 0.8102633, -1.3794733])
    assert length_controlled([2, 2, 2], [1, 2, 3], 0.5) == pytest.approx([0.5 * math.sqrt(1.5), 0, -0.5 * math.sqrt(1.5)])
    assert normalize([4, 4]) == [0.0, 0.0]
    with pytest.raises(LatentLMError, match="rho"):
        length_controlled([1, 2], [1, 2], -0.1)


def test_length_biased_judge_and_control_pick_shorter():
    base = CallableJudge(lambda p, r: float(r.endswith("7")))
    lb = LengthBiasedJudge(base, 0.01)
    resp = ["#### 7", "The answer is 7.\nI am sure it is right, it is 7", "#### 8", "I worked it out, and the answer is 7"]
    scores = lb.score(["q"] * 4, resp)
    assert scores == pytest.approx([1 + 0.06, 1 + 0.01 * len(resp[1]), 0 + 0.06, 1 + 0.01 * len(resp[3])])
    S = [{"ok": True, "score": s, "length": len(r), "text": r} for s, r in zip(scores, resp)]
    assert select_pair(S, rho=0)[0] == 1                                 # the length bias wins without control
    assert select_pair(S, rho=0.5)[0] == 0                               # the shortest correct one with it


def test_select_pair_rules():
    S = lambda ok, s, l: {"ok": ok, "score": s, "length": l, "text": f"{ok}{s}{l}"}
    assert select_pair([S(True, 0, 1), S(True, 1, 1), S(True, 0, 1)]) == (1, 0, "pair")                   # ties: earliest
    assert select_pair([S(True, 1, 1), S(False, None, 0), S(True, 0, 1)]) == (0, 1, "pair")
    assert select_pair([S(True, 1, 1), S(True, 1, 1)]) == (None, None, "all_equal")
    assert select_pair([S(True, 1, 1), S(True, 1, 1), S(False, None, 0)]) == (0, 2, "pair")               # format is a signal
    assert select_pair([S(False, None, 0)] * 2) == (None, None, "no_wellformed")
    assert select_pair([S(True, 1, 1), S(False, None, 0)], reject_malformed=False) == (None, None, "one_wellformed")
    rec = make_pair("P", [S(True, 1, 1), S(True, 0, 1)], 0, 1)
    assert rec == {"prompt": "P", "chosen": "True11", "rejected": "True01"}


def test_elo_closed_form_and_order():
    e = elo_scores([[0, 3], [1, 0]], reg=0)
    assert e[0] - e[1] == pytest.approx(math.log(3), abs=1e-6)
    # three players, each pair played both ways: a brute-force check that the fit maximises the objective
    B = battle_matrix(3, {(0, 1): "A", (1, 0): "B", (0, 2): "A", (2, 0): "A", (1, 2): "tie", (2, 1): "A"})
    e = elo_scores(B, reg=0.01)
    ll = lambda e: sum(B[m][n] * -math.log1p(math.exp(-(e[m] - e[n]))) for m in range(3) for n in range(3)) - 0.005 * sum(x * x for x in e)
    best = ll(e)
    for d in [(0.05, 0, 0), (0, 0.05, 0), (0, 0, 0.05), (-0.05, 0, 0), (0, -0.05, 0), (0, 0, -0.05)]:
        assert ll([a + b for a, b in zip(e, d)]) <= best + 1e-9
    assert e[0] > e[1] and e[0] > e[2]
    es = pairwise_scores(CallableJudge(lambda p, r: float(len(r))), "q", ["aa", "a", "aaa"])
    assert es[2] > es[0] > es[1]


# ---------------------------------------------------------------- tasks and seed data

def test_scratch_tasks_and_seed_records():
    s = scratch_problem("sums", 5, n_numbers=5, lo=1, hi=9)
    assert all(check_steps(s["thought"])) and s["thought"].endswith(str(s["answer"]))
    assert check_scratch(f"#### {s['answer']}", s["answer"]) and not check_scratch(f"#### {s['answer'] + 1}", s["answer"])
    ps = scratch_problems("sums", 100, seed=2) + scratch_problems("lookup", 50, seed=2)
    recs = seed_records(ps, useful=0.5, seed=1)
    th = [parse_output(r["completion"]) for r in recs[1::2]]
    assert all(t.ok for t in th) and all(check_scratch(t.response, p["answer"]) for t, p in zip(th, ps))
    assert all(not t.thought.count("=") for t, p in zip(th, ps) if p["task"] == "lookup")
    assert 0.35 < sum(t.thought == p["thought"] for t, p in zip(th[:100], ps[:100])) / 100 < 0.65


# ---------------------------------------------------------------- `latent-lm thought run`: bad input

SHRINK = ["--rounds", "1", "--task.n_train", "6", "--task.n_test", "6", "--sampling.k", "4", "--sampling.batch_size", "32",
          "--sampling.max_new_tokens", "48", "--eval.max_new_tokens", "48", "--eval.resample", "1", "--model.pretrain_steps", "150",
          "--model.pretrain_problems", "300", "--model.d_model", "32", "--model.n_layers", "2", "--model.n_dev", "4",
          "--model.useful", "0.5", "--train.epochs", "1", "--train.batch_size", "4",
          "--judge.kind", "length_biased", "--judge.length_bias", "0.01"]      # lengths differ even when every answer is wrong: pairs exist
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LATENT_LM_QUIET": "1"}

BAD = [
    (["--judge.rho", "-0.5"], "judge.rho"),
    (["--judge.kind", "gpt4"], "judge.kind"),
    (["--judge.mode", "listwise"], "judge.mode"),
    (["--judge.kind", "exact", "--judge.length_bias", "0.1"], "judge.length_bias"),
    (["--judge.temperature", "1"], "judge.temperature"),
    (["--prompt", "verbose"], "prompt"),
    (["--arms", "[thought, cot]"], "arms"),
    (["--task.tasks", "[poetry]"], "task.tasks"),
    (["--task.difficulty", "{sums: {n_digits: 3}}"], "task.difficulty.sums"),
    (["--task.difficulty", "{sort: {n_numbers: 3}}"], "task.difficulty names tasks"),
    (["--sampling.k", "1"], "sampling.k"),
    (["--sampling.top_p", "2"], "sampling.top_p"),
    (["--model.useful", "1.5"], "model.useful"),
    (["--train.beta", "0"], "train.beta"),
    (["--eval.temperature", "0"], "eval.temperature"),
    (["--rounds", "0"], "rounds"),
]


@pytest.mark.parametrize("extra,needle", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_input_exit_2_names_the_field_writes_nothing(tmp_path, capsys, extra, needle):
    from test_rounds import check_rejected
    check_rejected(["thought", "run", "--config", TINY, "--run_dir", tmp_path / "run", *SHRINK, *extra], needle, tmp_path / "run", capsys)


def test_bad_config_file_exit_2(tmp_path):
    (tmp_path / "bad.yaml").write_text("judge:\n  rhoo: 0.2\n")
    r = subprocess.run([sys.executable, "-m", "latent_lm.cli", "thought", "run", "--config", str(tmp_path / "bad.yaml"),
                        "--run_dir", str(tmp_path / "r")], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "rhoo" in r.stderr and not (tmp_path / "r").exists()


# ---------------------------------------------------------------- a tiny run, rerun, other config, kills

def _args(run_dir, extra=()):
    return [sys.executable, "-m", "latent_lm.cli", "thought", "run", "--config", str(TINY), "--run_dir", str(run_dir), *SHRINK, *extra]


def _cli(run_dir, extra=()):
    return subprocess.run(_args(run_dir, extra), capture_output=True, text=True, env=ENV, timeout=1200)


def _start(run_dir, extra=()):
    return subprocess.Popen(_args(run_dir, extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    "One run of the shrunk tiny config, timed stage by stage: what the CLI tests read, and the crash test's uninterrupted reference."
    sys.path.insert(0, str(ROOT / "tests"))
    from test_rounds import timed_run
    d = tmp_path_factory.mktemp("thought") / "run"
    out, work, timeline = timed_run(lambda: _start(d, ["--json"]), d / ".lock", lambda: _stage(d))
    return d, json.loads(out), work, timeline


def test_cli_tiny_run(tiny_run):
    d, s = tiny_run[:2]
    assert sorted(s["arms"]) == ["direct", "thought"]
    for arm, a in s["arms"].items():
        assert [m["model"] for m in a["models"]] == ["M0", "M1"]
        for m in a["models"]:
            assert set(m["eval"]) == {"sums", "lookup", "all"} and m["eval"]["all"]["n"] == 12
            assert 0 <= m["eval"]["all"]["accuracy"] <= 1 and 0 <= m["eval"]["all"]["win_rate"] <= 1
        rd = d / arm / "round_0"
        assert (rd / "model" / "latent_lm_done.json").exists() and not (rd / "model.train").exists()
        scored = read_jsonl(rd / "scores.jsonl")
        assert len(scored) == 12 * 4
        for p in read_jsonl(rd / "selected.jsonl"):                       # pairs are full outputs of the same prompt
            mine = [r for r in scored if r["key"] == p["key"]]
            assert p["chosen"] in [r["text"] for r in mine] and p["rejected"] in [r["text"] for r in mine]
            assert p["prompt"] == mine[0]["prompt"]
            assert (arm == "thought") == p["prompt"].startswith("Respond to the following user query")
    assert all(r["thought"] == "" for r in read_jsonl(d / "direct" / "eval" / "m0.jsonl"))
    assert (d / "figures" / "iterations.png").stat().st_size > 1000 and (d / "figures" / "example.png").stat().st_size > 1000


def test_cli_rerun_is_a_no_op_and_other_config_is_an_error(tiny_run, capsys):
    from test_rounds import cli                                    # in this process: no second start-up
    d, s = tiny_run[:2]
    before = {p: p.read_bytes() for p in d.rglob("*.json*")}
    rc, out, err = cli(_args(d, ["--json"])[3:], capsys)
    assert rc == 0 and json.loads(out)["arms"] == s["arms"], err[-2000:]
    rc, out, err = cli(_args(d, ["--judge.rho", "0.3"])[3:], capsys)
    assert rc == 2 and "judge.rho" in err, err[-2000:]
    assert {p: p.read_bytes() for p in d.rglob("*.json*")} == before


def _training(parts) -> bool: return any(x == "train" or x.endswith(".train") for x in parts)   # checkpoints, logs: deleted when done


def _artifacts(d: Path) -> dict:
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if not p.is_file() or rel.parts[0] in ("figures", "init_model_train") or _training(rel.parts[:-1]): continue
        if p.name.endswith(".lock") or (p.name.startswith(".") and ".tmp" in p.name): continue
        out[str(rel)] = p.read_bytes()
    return out


STAGES = ["init_model/latent_lm_done.json", "reference.jsonl", "thought/eval/m0.jsonl", "thought/round_0/generations.jsonl",
          "thought/round_0/selected.jsonl.done", "thought/round_0/model/latent_lm_done.json", "thought/eval/m1.jsonl",
          "direct/eval/m0.jsonl", "direct/round_0/selected.jsonl.done", "direct/round_0/model/latent_lm_done.json", "summary.json"]


def _stage(d: Path) -> tuple:
    return (sum((d / s).exists() for s in STAGES), sum(p.stat().st_size for p in d.glob("**/*.jsonl") if not _training(p.parts)))


@pytest.mark.timeout(3000)                  # a loaded machine: a restart killed in the seed model's training pays it again
@pytest.mark.parametrize("n_kills", [3, pytest.param(12, marks=pytest.mark.slow)])
def test_thought_resume_after_kills_is_byte_identical(tiny_run, tmp_path, n_kills):
    "Killed at points spread over the pipeline and resumed each time, a run ends byte-identical to the module's uninterrupted run."
    from test_rounds import kill_and_resume, forked_cli
    d, s, work, timeline = tiny_run
    expected = _artifacts(d)
    assert any(k.endswith("model.safetensors") for k in expected) and "summary.json" in expected
    start = forked_cli(_args(d, ["--json"])[3:], tmp_path / "logs", warm=[d / "init_model"])   # restarts forked from this warm process
    shutil.move(d, tmp_path / "ref")
    out2, kills = kill_and_resume(start, d / ".lock", n_kills=n_kills, timeline=timeline, span=work, seed=n_kills, stage=lambda: _stage(d))
    print(f"kills ({len(kills)}):", kills)
    assert len(kills) >= max(2, n_kills // 2), f"only {len(kills)} kills landed: {kills}"
    got = _artifacts(d)
    assert sorted(got) == sorted(expected)
    bad = [k for k in expected if got[k] != expected[k]]
    assert not bad, f"differ after kills {kills}: {bad}"
    assert json.loads(out2)["arms"] == s["arms"]


def test_pairwise_mode_select_uses_elo_of_responses(tmp_path):
    "judge.mode 'pairwise': the select stage compares every ordered pair of responses (never thoughts) and pairs best vs worst by ELO."
    cfg = load_config({"run_dir": str(tmp_path / "r"), "task": {"n_test": 2, "n_train": 2}, "judge": {"mode": "pairwise"}})
    j = MarkerAlarmJudge()
    arm = ThoughtArm(cfg, "thought", tmp_path / "r", "unused", judge=j)
    q = "What is 3 + 4?"
    texts = [format_output("SECRET-THOUGHT a", "#### 8"), format_output("SECRET-THOUGHT b", "#### 7"), format_output("SECRET-THOUGHT c", "#### 9")]
    gens = [{"key": "k", "sample": i, "prompt": thought_prompt(q), "instruction": q, "task": "sums", "gold": 7, "text": t}
            for i, t in enumerate(texts)]
    sc = arm.score("unused", gens)
    assert all(r["score"] is None for r in sc) and not j.seen          # pairwise judging happens in select, per prompt
    (tmp_path / "r" / "thought" / "round_0").mkdir(parents=True)
    pairs = arm.select(sc, 0)
    assert len(j.seen) == 6 * 2 and all(p == q for p, _ in j.seen)     # 6 ordered pairs, two responses each
    assert len(pairs) == 1 and pairs[0]["chosen"] == texts[1] and pairs[0]["rejected"] in (texts[0], texts[2])


# ---- bench/thought_m0.py: the seed-model selection rule, on hand-made probes (no training)
@pytest.fixture(scope="module")
def m0_bench():
    import importlib
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    return importlib.import_module("thought_m0")


def _probe(setting, seed, steps, share, premise=True):
    task = lambda: {"direct": 0.3, "correct_scratchpad": 0.9 if premise else 0.4, "generic_thought": 0.3, "sampled_correct_thought": share}
    return {"setting": setting, "seed": seed, "steps": steps, "path": "x", "premise": {"sums": task(), "sort": task()}}


def test_m0_rule_smallest_budget_then_setting_order(m0_bench):
    rows = [_probe("u0.5_sort6", 0, 1500, 0.01), _probe("u0.8_sort6", 0, 1500, 0.12, premise=False),
            _probe("u0.5_sort6", 0, 2500, 0.20), _probe("u0.8_sort6", 0, 2500, 0.10), _probe("u0.8_sort6", 0, 3500, 0.50)]
    res = m0_bench.summarize(rows, ["c"], 1.0, ["u0.5_sort6", "u0.8_sort6"])
    assert res["picked"] == {"setting": "u0.5_sort6", "steps": 2500}      # 1500: none qualifies (premise / window); 2500: both, u0.5 first
    assert res["verdict"] == "partial" and res["positive_control"]["shows"]   # one seed probed at the picked regime
    res = m0_bench.summarize(rows + [_probe("u0.5_sort6", s, 2500, 0.08) for s in (1, 2)], ["c"], 1.0, ["u0.5_sort6", "u0.8_sort6"])
    assert res["verdict"] == "reproduced"
    res = m0_bench.summarize(rows + [_probe("u0.5_sort6", s, 2500, 0.02) for s in (1, 2)], ["c"], 1.0, ["u0.5_sort6", "u0.8_sort6"])
    assert res["verdict"] == "partial" and not res["positive_control"]["shows"]
    assert m0_bench.summarize(rows[:2], ["c"], 1.0, ["u0.5_sort6", "u0.8_sort6"])["verdict"] == "not reproduced"
    assert m0_bench.reproduce_command(rows, ["u0.5_sort6", "u0.8_sort6"]) == \
        "python bench/thought_m0.py --settings u0.5_sort6 --budgets 1500 2500 --seeds 0 && " \
        "python bench/thought_m0.py --settings u0.8_sort6 --budgets 1500 2500 3500 --seeds 0"


def test_bench_settings_from_a_setting_name(m0_bench):
    T = m0_bench.T
    o = T.parse_setting("u0.8_sort6")
    assert o == {"useful": 0.8, "sort_n": 6, "practice": 0.0} and T.setting_name(o) == "u0.8_sort6"
    s = T.settings(True, o | {"lr": 1e-4})
    assert s["task"]["difficulty"]["sort"]["n_numbers"] == 6 and s["model"]["useful"] == 0.8 and s["train"]["lr"] == 1e-4
    assert s["model"]["practice"] == 0.0                                                   # the earlier search's seed models
    assert s["sampling"]["max_new_tokens"] == s["eval"]["max_new_tokens"] == 128   # sort of 6 in the thought format needs > 96
    assert T.base_config(True)["task"]["difficulty"]["sort"]["n_numbers"] == 4            # the default is untouched


# ---- bench/thought.py: seed-model setting names and the example it shows (picked by a stated rule, not by hand)
def test_setting_names_round_trip(m0_bench):
    bench = m0_bench.T
    for o in ({"useful": 0.8, "sort_n": 6}, {"useful": 0.2, "sort_n": 6, "practice": 1.0}, {"useful": 0.25, "sort_n": 4, "practice": 0.5}):
        name = bench.setting_name(o)
        assert bench.parse_setting(name) == {"practice": 0.0, **o}
    assert bench.setting_name({"useful": 0.8, "sort_n": 6}) == "u0.8_sort6"      # the names of the earlier search are unchanged
    with pytest.raises(SystemExit, match="u0.2_sort6_p1"):
        bench.parse_setting("u0.2_sort6_x1")


def test_seed_model_practices_and_mostly_writes_filler(m0_bench):
    bench = m0_bench.T
    m = bench.base_config(True)["model"]
    assert m["practice"] > 0 and m["useful"] < 0.5


def _write_eval(run_dir, table):
    "table: {model index: [(task, key, correct), ...]} as the thinking arm's eval files."
    d = Path(run_dir) / "thought" / "eval"; d.mkdir(parents=True)
    for k, rows in table.items():
        (d / f"m{k}.jsonl").write_text("".join(json.dumps({"key": key, "task": t, "thought": "", "response": "#### 1", "correct": c}) + "\n"
                                               for t, key, c in rows))


def test_pick_example_is_the_first_wrong_to_right(m0_bench, tmp_path):
    bench = m0_bench.T
    _write_eval(tmp_path / "a", {0: [("sums", "s0", True), ("sort", "o0", False), ("sums", "s1", False), ("sums", "s2", False)],
                                 1: [("sums", "s0", True), ("sort", "o0", False), ("sums", "s1", False), ("sums", "s2", True)],
                                 2: [("sums", "s0", False), ("sort", "o0", False), ("sums", "s1", True), ("sums", "s2", True)]})
    assert bench.pick_example(tmp_path / "a", "sums") == {"index": 1, "key": "s1", "changed": True}   # M0 wrong, M2 right
    assert bench.pick_example(tmp_path / "a", "sort") == {"index": 0, "key": "o0", "changed": False}  # none changed: the first


def test_bench_reuses_a_seed_model_only_with_its_settings(m0_bench, tmp_path):
    bench = m0_bench.T
    from latent_lm.core import atomic_write_json
    s = bench.settings(True, {"sort_n": 6, "pretrain_problems": 30})
    cfg = load_config({**s, "seed": 0, "run_dir": str(tmp_path / "cfg")})
    sdir = tmp_path / "seed0"
    atomic_write_json(sdir / "init_model" / "latent_lm_done.json", {"steps": 1})     # a finished seed model, as seed_model leaves it
    with pytest.raises(SystemExit, match="trained with other settings"):          # made before settings were recorded
        bench.trained_seed_model(cfg, sdir)
    atomic_write_json(sdir / "init_model_settings.json", bench.seed_model_settings(cfg))
    assert bench.trained_seed_model(cfg, sdir) == str(sdir / "init_model")        # same settings: reused, not trained again
    other = load_config({**s, "seed": 0, "run_dir": str(tmp_path / "cfg"), "model": {**s["model"], "practice": 0.5}})
    with pytest.raises(SystemExit, match="trained with other settings"):
        bench.trained_seed_model(other, sdir)
