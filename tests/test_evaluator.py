"""Self-Taught Evaluator: strict verdict parsing on malformed judgements, the paper's judge prompt filled exactly, rejection
sampling (only agreeing, position-balanced), the official data formats on hand-made records, bad config -> exit 2, the CLI on
a shrunk tiny config, and resume after a kill (finished records not redone, results identical)."""
import json, os, random, shutil, signal, subprocess, sys, time
from collections import Counter
from pathlib import Path

import pytest

from latent_lm.core import LatentLMError, read_jsonl
from latent_lm.judge import parse_judgement, ste_messages, STE_SYSTEM_PROMPT, self_taught_judge, pairwise_accuracy
from latent_lm.generate import FunctionGenerator
from latent_lm.tasks import arithmetic_problems, check_steps
from latent_lm.evaluator.data import (rejection_sample, balance_positions, select_judgements, synthetic_pairs, transfer_pairs, swap,
                                      judge_prompt, judgement_text, TINY_JUDGE_TEMPLATE, from_official_judgement, from_official_sft,
                                      from_official_dpo, from_official_input, read_official, write_official, to_official_sft,
                                      parse_worse_response)

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "evaluator" / "tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LATENT_LM_QUIET": "1"}
DIFF = {"n_steps": 2, "ops": "+-", "max_start": 15, "max_operand": 9}


# ---------------------------------------------------------------- parsing, prompt, rejection sampling

MALFORMED = {
    "": None, "   ": None, None: None, 3: None,
    "I think A is better.": None,                      # no bracketed verdict
    "Verdict: [A]": None, "[[a]]": None, "[[ A ]]": None, "[[AB]]": None,
    "[[A]] ... on reflection [[B]]": None,             # both: unreadable, as in the official parse_judgement
    "[[B]] and [[A]] and [[C]]": None,
    "[[A": None, "A]]": None,
    "Both fine. [[C]]": "tie",
    "Solved: #### 5\nA: 5 B: 6\n[[A]]": "A",
    "[[B]][[B]]": "B", "[[A]] or [[C]]": "A",
}


@pytest.mark.parametrize("text", list(MALFORMED), ids=[repr(t) for t in MALFORMED])
def test_verdict_parsing_malformed(text):
    assert parse_judgement(text) == MALFORMED[text]


def test_judge_prompt_filled_exactly_as_the_papers_template():
    m = ste_messages("Q {with braces}", "ans A", "ans B")
    expected_user = ("[User Question]\nQ {with braces}\n\n"
                     "[The Start of Assistant A's Answer]\nans A\n[The End of Assistant A's Answer]\n\n"
                     "[The Start of Assistant B's Answer]\nans B\n[The End of Assistant B's Answer]\n")
    assert m == [{"role": "system", "content": STE_SYSTEM_PROMPT}, {"role": "user", "content": expected_user}]
    assert STE_SYSTEM_PROMPT.startswith("Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants")
    assert 'strictly following this format: \\"[[A]]\\" if assistant A is better, \\"[[B]]\\" if assistant B is better.' in STE_SYSTEM_PROMPT
    pair = {"input": "What is {x}?", "response_a": "#### 1", "response_b": "#### 2"}
    assert judge_prompt(pair) == "Q: What is {x}?\n[A]\n#### 1\n[B]\n#### 2\n[J]\n"
    # the shared Judge renders the same text from the same template
    j = self_taught_judge(FunctionGenerator(lambda t: "[[A]]"), chat=False, system=None)
    assert j.render("Q {with braces}", response_a="ans A", response_b="ans B") == expected_user


def test_rejection_sampling_keeps_only_agreeing_and_balances_positions():
    rng = random.Random(0)
    scored = []
    for i in range(300):
        label = "A" if rng.random() < 0.7 else "B"                          # unbalanced labels
        for s in range(5):
            v = rng.choice(["[[A]]", "[[B]]", "[[A]] [[B]]", "none", "[[C]]"])
            scored.append({"key": i, "label": label, "prompt": f"p{i}", "text": f"j{i}/{s} {v}"})
    recs, tally = select_judgements(scored, random.Random(1))
    assert recs and all(parse_judgement(r["completion"]) == r["label"] for r in recs)
    assert tally["kept_A"] == tally["kept_B"] == len(recs) // 2
    assert len({r["key"] for r in recs}) == len(recs)                      # one judgement per example
    by = {}
    for r in scored: by.setdefault(r["key"], []).append(r["text"])
    agreeing = {k for k, ts in by.items() if any(parse_judgement(t) == scored[k * 5]["label"] for t in ts)}
    assert tally["kept_before_balance"] == len(agreeing) and tally["no_agreeing"] == 300 - len(agreeing)
    assert all(r["key"] in agreeing and r["completion"] in by[r["key"]] for r in recs)
    # min_agree (the official majority_voting) and the ablation without labels
    assert rejection_sample(["[[A]]", "[[B]]", "[[B]]"], "A", random.Random(0), min_agree=0.5) is None
    assert rejection_sample(["[[A]]", "[[A]]", "[[B]]"], "A", random.Random(0), min_agree=0.5) == "[[A]]"
    anyrecs, _ = select_judgements(scored, random.Random(1), mode="any", balance=False)
    assert any(parse_judgement(r["completion"]) != r["label"] for r in anyrecs)
    with pytest.raises(LatentLMError, match="'A' or 'B'"):
        rejection_sample(["[[A]]"], "C", random.Random(0))


def test_balance_is_uniform_over_which_are_kept():
    ex = [{"label": "A", "i": i} for i in range(4)] + [{"label": "B", "i": 9}]
    seen = Counter(next(e["i"] for e in balance_positions(ex, random.Random(s)) if e["label"] == "A") for s in range(400))
    assert set(seen) == {0, 1, 2, 3} and min(seen.values()) > 60


def test_pairs_have_the_known_winner():
    probs = arithmetic_problems(100, seed=2, **DIFF)
    for p, t, q in zip(synthetic_pairs(probs, 3), transfer_pairs(probs, 3), probs):
        for pair in (p, t, swap(p)):
            win = pair["response_a"] if pair["label"] == "A" else pair["response_b"]
            lose = pair["response_b"] if pair["label"] == "A" else pair["response_a"]
            assert win == q["solution"] and lose != win
            if pair is not t: assert parse_judgement(judgement_text(pair["input"], pair["response_a"], pair["response_b"])) == pair["label"]
        assert all(check_steps(p["response_a"])) and all(check_steps(p["response_b"]))    # y_l: a correct answer to x'
        assert check_steps(t["response_a"] + "\n" + t["response_b"]).count(False) == 1     # transfer: one slipped step
    acc = pairwise_accuracy([p["label"] for p in synthetic_pairs(probs, 3)], ["A"] * 100)
    assert 0.35 < acc["accuracy"] < 0.65                                                  # positions randomised


# ---------------------------------------------------------------- the official code's formats (hand-made records)

def test_official_formats_hand_made(tmp_path):
    gen = tmp_path / "gen.jsonl"
    gen.write_text(json.dumps({"text": "<|start|>judge this", "vllm_output": {"output": "A answers it. [[A]]\n"},
                               "metadata": {"ranks": [0, 1]}}) + "\n"
                   + json.dumps({"text": "<|start|>judge that", "vllm_output": {"output": "[[A]] [[B]]"}, "metadata": {"ranks": [3, 1]}}) + "\n")
    js = read_official(gen, "judgement")
    assert [(j["label"], j["verdict"], j["text"]) for j in js] == [("A", "A", "A answers it. [[A]]"), ("B", None, "[[A]] [[B]]")]
    recs, tally = select_judgements(js, random.Random(0), balance=False)                  # the official file feeds rejection sampling
    assert [r["completion"] for r in recs] == ["A answers it. [[A]]"] and tally["no_agreeing"] == 1
    sft = tmp_path / "sft.jsonl"
    write_official(sft, recs, "sft")
    row = json.loads(sft.read_text())
    assert set(row) == {"id", "src", "tgt"} and row["src"] == "<|start|>judge this" and row["tgt"] == "A answers it. [[A]]"
    assert read_official(sft, "sft") == [{"prompt": "<|start|>judge this", "completion": "A answers it. [[A]]"}]
    dpo = {"id": "0", "src": "s", "tgt_chosen": "good [[B]]", "tgt_rejected": "bad [[A]]"}
    assert from_official_dpo(dpo) == {"prompt": "s", "chosen": "good [[B]]", "rejected": "bad [[A]]"}
    assert from_official_input({"input": "q", "response_a": "a", "response_b": "b"})["response_b"] == "b"
    assert to_official_sft({"prompt": "p", "completion": "c"})["id"] == to_official_sft({"prompt": "p", "completion": "c"})["id"]
    for bad, needle in [({"src": "s"}, "tgt_chosen"), ({"src": "s", "tgt_chosen": "c"}, "tgt_rejected")]:
        with pytest.raises(LatentLMError, match=needle): from_official_dpo(bad)
    with pytest.raises(LatentLMError, match="metadata.ranks"):
        from_official_judgement({"text": "t", "vllm_output": {"output": "x"}, "metadata": {"ranks": [1]}})
    assert parse_worse_response("[User Question Modified]\nq2\n[The start of Assistant's answer to the modified instruction]\na2\n"
                                "[The end of Assistant's answer to the modified instruction]") == ("q2", "a2")


# ---------------------------------------------------------------- the CLI: bad input, a shrunk tiny run, resume after a kill

SHRINK = ["--iterations", "1", "--pairs.n_train", "12", "--pairs.n_test", "6", "--pairs.n_transfer", "6", "--sampling.k", "2",
          "--sampling.first", "teacher",
          "--sampling.batch_size", "32", "--sampling.max_new_tokens", "24", "--model.pretrain_steps", "12", "--model.eval_every", "6",
          "--model.n_dev", "6", "--model.pretrain_problems", "64", "--model.d_model", "32", "--model.n_layers", "2",
          "--train.epochs", "1", "--train.batch_size", "4", "--eval.k", "2"]

BAD = [
    (["--sampling.k", "0"], "sampling.k"),
    (["--sampling.first", "mixtral"], "sampling.first"),
    (["--sampling.teacher_accuracy", "2"], "sampling.teacher_accuracy"),
    (["--select.mode", "vote"], "select.mode"),
    (["--select.min_agree", "1.5"], "select.min_agree"),
    (["--select.dpo_pairs", "-1"], "select.dpo_pairs"),
    (["--pairs.difficulty", "{ops: '+*'}"], "pairs.difficulty.ops"),
    (["--pairs.template", "{input} {response_a}"], "pairs.template"),
    (["--pairs.n_test", "0"], "pairs.n_test"),
    (["--iterations", "0"], "iterations"),
    (["--train.lr", "-1"], "train.lr"),
    (["--eval.k", "0"], "eval.k"),
    (["--model.target_accuracy", "0"], "model.target_accuracy"),
    (["--pairs.bogus", "1"], "pairs.bogus"),
    (["--pairs.change", "all"], "pairs.change"),
    (["--pairs.system", "ste"], "pairs.system"),
]


@pytest.mark.parametrize("extra,needle", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_config_exit_2_names_the_field_writes_nothing(tmp_path, capsys, extra, needle):
    from test_rounds import check_rejected
    check_rejected(["evaluator", "run", "--config", TINY, "--run_dir", tmp_path / "run", *SHRINK, *extra], needle, tmp_path / "run", capsys)


def test_configs_load():
    from latent_lm.evaluator.run import load_config
    tiny, paper = load_config(TINY), load_config(ROOT / "configs" / "evaluator" / "paper.yaml")
    assert tiny.model.init == "tiny" and tiny.select.mode == "agree" and tiny.train.from_seed
    assert (paper.sampling.k, paper.sampling.temperature, paper.sampling.top_p) == (15, 0.7, 0.9)
    assert (paper.train.beta, paper.train.alpha, paper.train.lr, paper.select.dpo_pairs) == (0.1, 1.5, 1e-6, 1)
    assert paper.pairs.system == "ste" and paper.model.chat


def test_bad_yaml_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("pairs:\n  n_trian: 3\n")
    r = subprocess.run([sys.executable, "-m", "latent_lm.cli", "evaluator", "run", "--config", str(tmp_path / "bad.yaml"),
                        "--run_dir", str(tmp_path / "r")], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 2 and "n_trian" in r.stderr and not (tmp_path / "r").exists()


def _args(run_dir, extra=()):
    return [sys.executable, "-m", "latent_lm.cli", "evaluator", "run", "--config", str(TINY), "--run_dir", str(run_dir), *SHRINK, *extra]


def _artifacts(d: Path) -> dict:
    "Records, selections, metrics, summary and model weights by relative path (not training logs, locks, temp files or figures)."
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if not p.is_file() or rel.parts[0] in ("figures", "init_model_train") or any(x == "train" or x.endswith(".train") for x in rel.parts[:-1]): continue
        if p.name.endswith(".lock") or p.name.startswith(".") or str(rel) == "config.json": continue   # config.json: the run_dir as given
        out[str(rel)] = p.read_bytes().replace(str(d).encode(), b"<RUN>")     # the run folder's own path appears in some records
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    "The shrunk tiny config through the CLI, in this process (the kill test below runs it as a process)."
    from test_rounds import cli
    d = tmp_path_factory.mktemp("evaluator") / "run"
    rc, out, err = cli(_args(d, ["--json"])[3:])
    assert rc == 0, err[-3000:]
    return d, json.loads(out)


def test_cli_tiny_run(tiny_run):
    d, s = tiny_run
    assert [j["judge"] for j in s["judges"]] == ["J0", "J1"]
    for j in s["judges"]:
        for k in ("accuracy", "accuracy_first", "accuracy_second", "consistent", "majority_accuracy", "transfer_accuracy"):
            assert 0 <= j[k] <= 1
        assert j["n"] == 6
    it = s["iterations"][0]
    assert it["pairs"] == 12 and it["kept_A"] == it["kept_B"] and it["kept"] == len(read_jsonl(d / "round_0" / "selected.jsonl"))
    scored = read_jsonl(d / "round_0" / "scores.jsonl")
    assert len(scored) == 12 * 2 and all(r["agree"] == (parse_judgement(r["text"]) == r["label"]) for r in scored)
    assert all(parse_judgement(r["completion"]) == r["label"] for r in read_jsonl(d / "round_0" / "selected.jsonl"))
    assert (d / "round_0" / "model" / "model.safetensors").exists()
    for f in ("accuracy.png", "funnel.png"): assert (d / "figures" / f).stat().st_size > 1000
    # the trained judge loads back (from_pretrained) and serves as a shared Judge
    from latent_lm.lm import load_lm
    from latent_lm.generate import HFGenerator
    m, tok = load_lm(d / "round_0" / "model")
    j = self_taught_judge(HFGenerator(m, tok), template=TINY_JUDGE_TEMPLATE, system=None, chat=False, max_new_tokens=24)
    assert all(v in (-1, 0, 1) for v in j.judge(["Ada has 3 pens. Ada buys 2 more. How many pens does Ada have now?"], [["3 + 2 = 5\n#### 5", "3 + 2 = 6\n#### 6"]]))


def test_cli_rerun_is_a_no_op_and_other_config_is_an_error(tiny_run, capsys):
    from test_rounds import cli                                    # in this process: no second start-up
    d, s = tiny_run
    before = _artifacts(d)
    rc, out, err = cli(_args(d, ["--json"])[3:], capsys)
    assert rc == 0 and json.loads(out)["judges"] == s["judges"], err[-2000:]
    rc, out, err = cli(_args(d, ["--sampling.temperature", "0.9"])[3:], capsys)
    assert rc == 2 and "sampling.temperature" in err, err[-2000:]
    assert _artifacts(d) == before


def test_resume_after_kill_is_identical(tiny_run, tmp_path):
    ref, s = tiny_run
    expected = _artifacts(ref)
    d = tmp_path / "run"
    shutil.copytree(ref, d)                        # then undo the run down to a mid-round state, as a kill would leave it
    # a kill right after the round's judgements were scored: later stages and the rest of the run are gone
    for rel in ["round_0/selected.jsonl", "round_0/selected.jsonl.done", "round_0/selection.json", "round_0/model", "round_0/metrics.json",
                "round_0/model.train", "eval/j1_test.jsonl", "eval/j1_test.jsonl.done", "eval/j1_transfer.jsonl", "eval/j1_transfer.jsonl.done",
                "summary.json", "figures"]:
        p = d / rel
        if p.is_dir(): shutil.rmtree(p)
        elif p.exists(): p.unlink()
    gen_before = (d / "round_0" / "generations.jsonl").read_bytes()
    # now a real SIGKILL once the round's selection is committed (in its SFT), then resume; both processes are forked from this
    # warm one (a real process, real signals, no interpreter start-up)
    from test_rounds import forked_cli
    start = forked_cli(_args(d, ["--json"])[3:], tmp_path / "logs", warm=[ref / "init_model"])
    p = start()
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (d / "round_0" / "selected.jsonl.done").exists(): time.sleep(0.05)
    if p.poll() is None: p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    r = start(); out, err = r.communicate(timeout=900)
    assert r.returncode == 0, err[-3000:]
    assert (d / "round_0" / "generations.jsonl").read_bytes() == gen_before        # finished records were not redone
    got = _artifacts(d)
    assert sorted(got) == sorted(expected)
    bad = [k for k in expected if got[k] != expected[k]]
    assert not bad, bad
    assert json.loads(out)["judges"][1]["accuracy"] == s["judges"][1]["accuracy"]


def test_dpo_stage_trains_after_sft(tmp_path, capsys):
    "select.dpo_pairs > 0: the iteration trains SFT on the kept judgements, then DPO + NLL from that SFT model on (agreeing, disagreeing) pairs."
    from test_rounds import cli                                    # in this process; evaluation shrunk further: this test reads the training
    d = tmp_path / "run"
    rc, out, err = cli(_args(d, ["--select.dpo_pairs", "1", "--pairs.n_test", "2", "--pairs.n_transfer", "2", "--json"])[3:], capsys)
    assert rc == 0, err[-3000:]
    sel = [x for x in read_jsonl(d / "round_0" / "selected.jsonl")]
    dpo = [x for x in sel if x["kind"] == "dpo"]
    assert dpo and all(parse_judgement(x["chosen"]) == x["label"] and parse_judgement(x["rejected"]) != x["label"] for x in dpo)
    assert (d / "round_0" / "sft" / "model" / "model.safetensors").exists() and not (d / "round_0" / "sft" / "model.train").exists()
    done = json.loads((d / "round_0" / "model" / "latent_lm_done.json").read_text())
    assert "dpo" in done                                                          # the DPO stage ran and is recorded in the done marker
    assert (d / "round_0" / "model" / "model.safetensors").read_bytes() != (d / "round_0" / "sft" / "model" / "model.safetensors").read_bytes()
