"Judges: parsing of malformed outputs, expected-score aggregation, position-swap logic with scripted generators."
import math, pytest, torch
from types import SimpleNamespace
from latent_lm.core import LatentLMError
from latent_lm.lm import tiny_tokenizer
from latent_lm.generate import FunctionGenerator, HFGenerator
from latent_lm.judge import (parse_verdict, parse_score, extract_answer, LLMJudge, ExactAnswerJudge, RegexJudge,
                             CallableJudge, combine_orders, majority_verdict)


@pytest.mark.parametrize("text,want", [
    ("[[A]]", "A"), ("blah [[b]]", "B"), ("[[C]]", "tie"), ("[[ A ]]", "A"),
    ("Say [[A]] or [[B]]. Verdict: [[A]]", "A"), ("[[A]] [[B]]", "B"),
    ("Verdict: B", "B"), ("**Final verdict:** Assistant A", "A"), ("verdict: a", "A"),
    ("", None), (None, None), ("   \n ", None), ("garbage %$#", None), ("[[E]]", None), ("[A]", None),
    ("Verdict: a mix of both", None), ("Both A and B are good", None), ("[[", None), ("]]A[[", None),
])
def test_parse_verdict_malformed(text, want):
    assert parse_verdict(text) == want


@pytest.mark.parametrize("text,want", [
    ("[[7]]", 7.0), ("Score: 7", 7.0), ("7/10", 7.0), ("Rating: 7.5", 7.5), ("**Score:** 8", 8.0), ("score: **9**", 9.0),
    ("[[0]]", None), ("[[11]]", None), ("Score: 12", None), ("Score: -1", None), ("3/5", None), ("Score: 4/5", None),
    ("", None), (None, None), ("garbage", None), ("Score: ten", None), ("[[7.5.3]]", None), ("1e400", None),
    ("Scale is 1-10. Score: 2", 2.0), ("[[3]] ... Score: 9", 3.0),
])
def test_parse_score_malformed(text, want):
    assert parse_score(text, 1, 10) == want


def test_parsers_never_raise_on_odd_input():
    for x in [b"[[A]]", 3.5, ["[[A]]"], {"a": 1}, "\x00" * 100, "[" * 10_000 + "]" * 10_000, "Score:" * 5000]:
        parse_verdict(x); parse_score(x); extract_answer(x)


def test_extract_answer():
    assert extract_answer("5 + 3 = 8\n#### 8") == 8.0
    assert extract_answer("so \\boxed{1,024}") == 1024.0
    assert extract_answer("The answer is -7.") == -7.0
    assert extract_answer("we get 3 then 4, finally 12") == 12.0
    assert extract_answer("no idea") is None


def _replies(text):
    a = text.split("[Reply A]\n", 1)[1].split("\n\n[Reply B]", 1)[0]
    b = text.split("[Reply B]\n", 1)[1].split("\n\nExplain", 1)[0]
    return a, b


def test_position_swap_with_scripted_judges():
    P, A, B = ["p1", "p2", "p3"], ["right", "wrong", "right"], ["wrong", "right", "right"]
    fair = LLMJudge(FunctionGenerator(lambda t: "[[A]]" if _replies(t)[0] == "right" and _replies(t)[1] != "right"
                                      else "[[B]]" if _replies(t)[1] == "right" and _replies(t)[0] != "right" else "[[C]]"),
                    mode="pairwise", allow_tie=True)
    assert [(v.winner, v.first, v.second) for v in fair.compare(P, A, B)] == [("A", "A", "B"), ("B", "B", "A"), ("tie", "tie", "tie")]
    always_second = LLMJudge(FunctionGenerator(lambda t: "Verdict: B"), mode="pairwise")
    assert [v.winner for v in always_second.compare(P, A, B)] == ["tie"] * 3
    # unreadable in one order only -> None (failure, not a tie)
    half = LLMJudge(FunctionGenerator(lambda t: "[[A]]" if _replies(t)[0] == "right" else "hmm"), mode="pairwise")
    assert [v.winner for v in half.compare(P[:1], A[:1], B[:1])] == [None]
    assert fair.judge(P, [[a, b] for a, b in zip(A, B)]) == [0, 1, -1]
    assert fair.judge(P, [[a, b] for a, b in zip(A, B)], shuffle_order=False) == [0, 1, -1]
    with pytest.raises(LatentLMError, match="exactly 2"): fair.judge(P[:1], [["x", "y", "z"]])
    assert combine_orders("A", "B") == "A" and combine_orders("B", "B") == "tie" and combine_orders(None, "B") is None


def test_k_samples_majority_per_order():
    # k=3 per order, majority A then majority B -> consistent A
    outs = iter(["[[A]]", "[[A]]", "[[B]]",  "[[B]]", "x", "[[B]]"])
    j = LLMJudge(FunctionGenerator(lambda t: next(outs)), mode="pairwise", k=3, temperature=1.0)
    v = j.compare(["p"], ["a"], ["b"])[0]
    assert (v.winner, v.first, v.second, len(v.outputs)) == ("A", "A", "B", 6)
    assert majority_verdict(["A", "B", None]) == "tie"


def test_pointwise_mean_ignores_none():
    outs = iter(["[[4]]", "junk", "[[8]]", "junk", "junk", "junk"])
    j = LLMJudge(FunctionGenerator(lambda t: next(outs)), k=3, temperature=0.7)
    assert j.score(["p", "q"], ["a", "b"]) == [6.0, None]


class _Bigram(torch.nn.Module):
    def __init__(self, table):
        super().__init__(); self.table = torch.nn.Parameter(table); self.config = SimpleNamespace(max_position_embeddings=4096)
    def forward(self, input_ids, attention_mask=None, position_ids=None, **kw):
        return SimpleNamespace(logits=self.table[input_ids])


def test_expected_score_hand_built():
    tok = tiny_tokenizer()
    V = len(tok)
    tid = lambda ch: tok(ch, add_special_tokens=False)["input_ids"][0]
    table = torch.zeros(V, V)
    # after "[" the model puts probability mass only on 3 and 9, in proportion e^2 : e^0
    table[tid("[")] = -30.0; table[tid("["), tid("3")] = 2.0; table[tid("["), tid("9")] = 0.0
    j = LLMJudge(HFGenerator(_Bigram(table), tok, use_cache=False), score_range=(1, 9))
    d = j.score_distribution(["q"], ["r"], outputs=["ok [[5]]"])[0]
    p3 = math.exp(2) / (math.exp(2) + 1)
    assert d["3"] == pytest.approx(p3, abs=1e-6) and d["9"] == pytest.approx(1 - p3, abs=1e-6)
    assert j.expected_score(["q"], ["r"], outputs=["ok [[5]]"])[0] == pytest.approx(3 * p3 + 9 * (1 - p3), abs=1e-5)
    assert j.expected_score(["q"], ["r"], outputs=["no marker"]) == [None]
    with pytest.raises(LatentLMError, match="HFGenerator"):
        LLMJudge(FunctionGenerator(lambda t: "[[5]]")).expected_score(["q"], ["r"])


def test_rule_judges():
    ej = ExactAnswerJudge(lambda p: int(p.split()[-1]))
    assert ej.score(["gold 42", "gold 7"], ["#### 42", "I think 8"]) == [1.0, 0.0]
    assert [v.winner for v in ej.compare(["gold 42"] * 2, ["42", "41"], ["41", "41"])] == ["A", "tie"]
    assert RegexJudge(r"\d+").score(["p", "p"], ["a1", "b"]) == [1.0, 0.0]
    assert CallableJudge(lambda p, r: None if r == "?" else len(r)).compare(["p", "p"], ["aa", "?"], ["a", "b"])[0].winner == "A"
    assert CallableJudge(lambda p, r: None if r == "?" else len(r)).compare(["p"], ["?"], ["b"])[0].winner is None
    with pytest.raises(LatentLMError, match="2 prompts but 1"): RegexJudge("x").score(["a", "b"], ["x"])


@pytest.mark.parametrize("text,want", [
    ("#### 3/4", 0.75), ("#### 6/8 of it", 0.75), ("#### -1/2", -0.5), ("#### 12/4", 3), ("#### 3/0", None), ("#### 3", 3),
    ("#### 1,200/4", 300), ("#### 2.5/0.5", 5), ("no answer", None),
])
def test_hash_extractor_reads_fractions_whole(text, want):
    "'#### 3/4' is 0.75 (it was read as 3); a zero denominator is no answer; the auto extractor agrees."
    from latent_lm.judge import answer_extractor, normalize_answer
    got = answer_extractor("####")(text)
    assert got == want if want is None else got == pytest.approx(want)
    if want is not None: assert normalize_answer(extract_answer(text)) == pytest.approx(want)


def test_one_extractor_everywhere():
    "tasks and ScPO use judge's extractor itself, not copies."
    import latent_lm.judge as J, latent_lm.tasks as T, latent_lm.scpo.vote as V
    assert T.answer_extractor is J.answer_extractor and V.answer_extractor is J.answer_extractor
    assert T.boxed_contents is J.boxed_contents and T.normalize_answer is J.normalize_answer and V.majority_answer is J.majority_answer


# ---------------------------------------------------------------- the Self-Taught Evaluator's judge (paper prompt, strict parse, accuracy)

def test_parse_judgement_is_the_official_strict_rule():
    from latent_lm.judge import parse_judgement
    assert [parse_judgement(t) for t in ["x [[A]]", "[[B]]", "[[C]]", "[[A]] [[B]]", "Verdict: A", "[[ A ]]", None, ""]] == \
           ["A", "B", "tie", None, None, None, None, None]


def test_pairwise_accuracy_hand_computed():
    from latent_lm.judge import pairwise_accuracy
    r = pairwise_accuracy(["A", "B", "B"], ["A", "A", None], ["B", "A", "A"])
    assert r["accuracy_first"] == pytest.approx(1 / 3) and r["accuracy_second"] == pytest.approx(1.0)
    assert r["accuracy"] == pytest.approx(4 / 6) and r["consistent"] == pytest.approx(1 / 3) and r["unreadable"] == pytest.approx(1 / 6)
    with pytest.raises(LatentLMError, match="one verdict per pair"): pairwise_accuracy(["A"], [])


def test_self_taught_judge_both_orders_majority():
    from latent_lm.judge import self_taught_judge, STE_SYSTEM_PROMPT
    from latent_lm.generate import FunctionGenerator
    calls = []
    def fn(t, rng):
        calls.append(t)
        a = t.split("A's Answer]\n")[1].split("\n")[0]
        return "[[A]]" if (a == "good") != (rng.random() < 0.2) else "[[B]]"      # right 80% of the time
    j = self_taught_judge(FunctionGenerator(fn), k=9, temperature=1.0, chat=False, system=None)
    vs = j.compare(["q"] * 40, ["good"] * 20 + ["bad"] * 20, ["bad"] * 20 + ["good"] * 20)
    assert sum(v.winner == ("A" if i < 20 else "B") for i, v in enumerate(vs)) >= 36      # majority of 9 per order, both orders
    assert len(calls) == 40 * 2 * 9 and all(c.startswith("[User Question]\nq\n") for c in calls)
    assert "impartial judge" in STE_SYSTEM_PROMPT


def test_continuation_logps_brute_force_and_shared_scores():
    from latent_lm.judge import continuation_logps, expected_score, integer_score, score_probs
    table = torch.randn(7, 7, generator=torch.Generator().manual_seed(3))
    class Table(torch.nn.Module):
        def __init__(self): super().__init__(); self.t = torch.nn.Parameter(table)
        def forward(self, input_ids, attention_mask=None, **kw): return SimpleNamespace(logits=self.t[input_ids])
    L = torch.log_softmax(table, -1)
    prefixes, conts = [[1], [2, 3, 4], [5, 6]], [[0], [6, 2, 1]]
    got = continuation_logps(Table(), prefixes, conts, pad_id=0, batch_size=3)
    for i, p in enumerate(prefixes):
        for j, c in enumerate(conts):
            seq, want = p + c, 0.0
            for k in range(len(p), len(seq)): want += float(L[seq[k - 1], seq[k]])
            assert float(got[i, j]) == pytest.approx(want, abs=1e-5)
    lp = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    assert score_probs(lp).tolist() == pytest.approx([0.2, 0.5, 0.3], abs=1e-6)
    assert float(expected_score(lp)) == pytest.approx(0.5 + 0.6)
    assert float(expected_score(lp, [1, 5, 10])) == pytest.approx(0.2 + 2.5 + 3.0)
    assert float(integer_score(lp, [1, 5, 10])) == 5.0
    with pytest.raises(LatentLMError, match="scores 0..10"): expected_score(lp, range(11))


def test_rule_safety_judge_reads_the_visible_text():
    from latent_lm.judge import RuleSafetyJudge, visible_text
    assert visible_text("a[RESET]b[RESET]c") == "c" and visible_text("abc") == "abc"
    j = RuleSafetyJudge(r"\b\d{4}\b")
    assert j.score(["q"] * 3, ["pin 1234", "1234[RESET]No.", "ok[RESET]pin 4321"]) == [0.0, 1.0, 0.0]
    assert RuleSafetyJudge(lambda t: "x" in t, reset="<r>").score(["q", "q"], ["x<r>y", "y<r>x"]) == [1.0, 0.0]
    with pytest.raises(LatentLMError, match="invalid regex"): RuleSafetyJudge("(")


def test_expected_scores_batched_equal_one_at_a_time():
    "The candidates of several items go through the model padded together: the same numbers as item by item."
    from latent_lm.lm import tiny_lm
    m, tok = tiny_lm(d_model=32, n_layers=1, n_heads=2, seed=1)
    j = LLMJudge(HFGenerator(m, tok, batch_size=4))
    outs = ["Fine. Score: [[7]]", "no score here", "Score: 3", "A much longer judgement before its score. [[10]]"]
    qs, rs = ["q", "a longer question", "q3", "q4"], ["r1", "r2 is longer", "r", "r4"]
    together = j.expected_score(qs, rs, outputs=outs)
    alone = [j.expected_score([q], [r], outputs=[o])[0] for q, r, o in zip(qs, rs, outs)]
    assert together[1] is None and alone[1] is None
    for a, b in zip(together, alone):
        if a is not None: assert a == pytest.approx(b, abs=1e-4)
