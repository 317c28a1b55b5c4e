"""tasks: the seed model reaches its target and stops, evaluation resumes to the same file, one tokenizer recipe, checkers."""
import json, random
from pathlib import Path

import pytest

from latent_lm.core import LatentLMError, read_jsonl
from latent_lm.generate import Generator, Completion
from latent_lm.lm import bpe_tokenizer, load_lm
from latent_lm.tasks import (arithmetic_problems, arithmetic_tokenizer, task_tokenizer, check_answer, format_question, sft_records,
                             SeedModelConfig, train_seed_model, greedy_accuracy, evaluate_answers, QUESTION_ONLY)


def test_task_tokenizer_is_the_lm_recipe_with_digits_split():
    probs = arithmetic_problems(200, seed=1, n_steps=2)
    corpus = [p["question"] + "\n" + p["solution"] for p in probs]
    a, b = task_tokenizer(corpus, 320), bpe_tokenizer(corpus, 320, split_digits=True)
    text = probs[0]["question"] + " 12345"
    assert a(text).input_ids == b(text).input_ids
    assert [t for t in a.convert_ids_to_tokens(a("x 9876").input_ids) if t.strip("Ġ").isdigit()] == ["Ġ9", "8", "7", "6"] or \
        all(len(t.strip("Ġ")) == 1 for t in a.convert_ids_to_tokens(a("9876").input_ids))
    with pytest.raises(LatentLMError, match="non-empty corpus"): task_tokenizer([""])


def test_check_answer_reads_fractions_whole():
    assert check_answer("so\n#### 3/4", 0.75) and not check_answer("#### 3/4", 3)
    assert not check_answer("#### 3/0", 3) and not check_answer("#### 3/0", 0)
    assert check_answer("#### 1,200", 1200) and check_answer(r"\boxed{7}", 7, "boxed")


class Scripted(Generator):
    "Greedy right on even answers; samples right with probability 0.6, seeded per prompt; can fail after `fail_after` calls."
    def __init__(self, gold, fail_after=None): self.gold, self.fail_after, self.calls = gold, fail_after, 0
    def _generate(self, texts, n, temperature, top_p, max_new_tokens, stop, seed):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after: raise KeyboardInterrupt
        out = []
        for i, t in enumerate(texts):
            g = self.gold[t]
            if temperature == 0: out.append([Completion(f"#### {g if g % 2 == 0 else g + 1}", [], 0, "stop")] * n); continue
            rng = random.Random(seed[i] if isinstance(seed, list) else seed * 1000 + i)
            out.append([Completion(f"#### {g if rng.random() < 0.6 else g + rng.choice([1, 2])}", [], 0, "stop") for _ in range(n)])
        return out


def test_evaluate_answers_resumes_to_the_same_file(tmp_path):
    probs = arithmetic_problems(30, seed=2, n_steps=1)
    gold = {format_question(p, QUESTION_ONLY): p["answer"] for p in probs}
    m = evaluate_answers(Scripted(gold), probs, k=5, seed=3, out=tmp_path / "a.jsonl", chunk_size=4)
    with pytest.raises(KeyboardInterrupt):                           # stopped after 3 chunks (2 generate calls per chunk)
        evaluate_answers(Scripted(gold, fail_after=6), probs, k=5, seed=3, out=tmp_path / "b.jsonl", chunk_size=4)
    assert len(read_jsonl(tmp_path / "b.jsonl")) == 12
    m2 = evaluate_answers(Scripted(gold), probs, k=5, seed=3, out=tmp_path / "b.jsonl", chunk_size=4)
    assert m2 == m and (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert m["greedy_accuracy"] == sum(p["answer"] % 2 == 0 for p in probs) / 30
    recs = read_jsonl(tmp_path / "a.jsonl")
    assert all(r["sc_correct"] == (r["majority"] == r["gold"]) for r in recs)
    # another seed draws other samples (the seed reaches the generator)
    assert evaluate_answers(Scripted(gold), probs, k=5, seed=4)["sample_accuracy"] != m["sample_accuracy"]


def test_seed_model_stops_at_its_target(tmp_path):
    probs = arithmetic_problems(600, seed=4, n_steps=1, ops="+", max_start=4, max_operand=3)
    train, dev = probs[:560], probs[560:]
    cfg = SeedModelConfig(d_model=64, n_layers=4, n_heads=4, pretrain_steps=300, eval_every=20, fine_eval_every=5,
                          pretrain_batch_size=32, target_accuracy=0.25)
    info = train_seed_model(cfg, sft_records(train), dev, tmp_path / "m0", max_new_tokens=24, seed=0, tokenizer=arithmetic_tokenizer())
    assert info["dev_accuracy"] >= 0.25 and info["steps"] < 300, info
    assert all(h["dev_accuracy"] < 0.25 for h in info["history"][:-1])         # it stopped at the first evaluation that reached it
    m, tok = load_lm(tmp_path / "m0")
    assert greedy_accuracy(m, tok, dev, max_new_tokens=24) == info["dev_accuracy"]
    assert json.loads((tmp_path / "m0" / "latent_lm_done.json").read_text())["steps"] == info["steps"]


def test_fine_eval_from_sets_when_evaluations_tighten(tmp_path):
    probs = arithmetic_problems(20, seed=3, n_steps=1, ops="+")
    kw = dict(d_model=32, n_layers=1, n_heads=2, pretrain_steps=8, eval_every=4, fine_eval_every=2, pretrain_batch_size=8, target_accuracy=1.0)
    steps = lambda cfg, d: [h["step"] for h in train_seed_model(cfg, sft_records(probs[:16]), probs[16:18], tmp_path / d, max_new_tokens=3,
                                                                tokenizer=arithmetic_tokenizer())["history"]]
    assert steps(SeedModelConfig(**kw), "a") == [4, 8]                         # default 0.5 x target: never reached here
    assert steps(SeedModelConfig(fine_eval_from=0.0, **kw), "b") == [4, 6, 8]  # from the first evaluation on
    with pytest.raises(LatentLMError, match="fine_eval_from"): SeedModelConfig(fine_eval_from=-0.1).check()


def test_train_corpus_lm(tmp_path):
    import torch
    from latent_lm.lm import tiny_lm
    from latent_lm.tasks import TinyLMConfig, CorpusLMConfig, train_corpus_lm
    recs = [{"prompt": f"{a}+{b}=", "completion": f"{a + b}"} for a in range(5) for b in range(5)]
    info = train_corpus_lm(TinyLMConfig(d_model=32, n_layers=1, n_heads=2), [r["prompt"] for r in recs], tmp_path / "init")
    m0, _ = load_lm(info["path"]); ref, _ = tiny_lm(d_model=32, n_layers=1, n_heads=2, max_len=128, seed=0)
    assert info["steps"] == 0 and all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), ref.state_dict().values()))
    cfg = CorpusLMConfig(d_model=32, n_layers=1, n_heads=2, steps=25, lr=1e-2, batch_size=25)
    info = train_corpus_lm(cfg, recs, tmp_path / "lm")
    assert info["steps"] == 25 and info["n_records"] == 25 and 0 < info["final_loss"] < 5.0
    assert train_corpus_lm(cfg, [], tmp_path / "lm") == info                                    # reused, nothing rebuilt
    with pytest.raises(LatentLMError, match="records"): train_corpus_lm(cfg, ["plain text"], tmp_path / "x")
    with pytest.raises(LatentLMError, match="model.vocab_size"): train_corpus_lm(TinyLMConfig(vocab_size=50), ["a"], tmp_path / "y")
