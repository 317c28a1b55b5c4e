"Coconut wrapper: cached multi-pass forward == naive reference (GPT-2 and Llama), batched generation == batch-1 == no cache, bad input."
import random
import pytest
import torch
from latent_lm.core import LatentLMError
from latent_lm.lm import tiny_lm, tiny_tokenizer
from latent_lm.coconut.data import START_LATENT, LATENT, END_LATENT, PAUSE, symbolic_tokenizer, make_symbolic_prosqa
from latent_lm.coconut.model import (CoconutLM, add_coconut_tokens, align_latents, latent_block, naive_forward, naive_generate,
                                     tiny_gpt2)
from latent_lm.coconut.train import (Curriculum, CoconutCollator, ThoughtTokens, encode_record, build_sequence, RecordFormat,
                                     CoconutModule)


def _model(family, seed=0):
    if family == "gpt2":
        tok = tiny_tokenizer("bytes")
        base = tiny_gpt2(len(tok), d_model=32, n_layers=2, n_heads=4, seed=seed, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    else:
        base, tok = tiny_lm("bytes", d_model=32, n_layers=2, n_heads=4, seed=seed)
    return CoconutLM.wrap(base, tok, init_token=None), tok


def _batch(cl, tok, ks, seed=0):
    rnd = random.Random(seed)
    seqs, labs = [], []
    for k in ks:
        q = [rnd.randrange(3, 250) for _ in range(rnd.randrange(3, 9))]
        tail = [rnd.randrange(3, 250) for _ in range(rnd.randrange(1, 6))] + [tok.eos_token_id]
        s = q + [cl.start_id] + [cl.latent_id] * k + [cl.end_id] + tail
        seqs.append(s); labs.append([-100] * (len(s) - len(tail)) + tail)
    return align_latents(seqs, cl.latent_id, cl.pad_id, labs)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("ks", [[3, 1, 0, 2], [4, 4], [0, 0], [1]])
def test_forward_equals_naive(family, ks):
    cl, tok = _model(family)
    b = _batch(cl, tok, ks)
    cl.zero_grad(); a = cl(**b); a.loss.backward()
    ga = {k: p.grad.clone() for k, p in cl.named_parameters() if p.grad is not None}
    cl.zero_grad(); n = naive_forward(cl.base, b["input_ids"], cl.latent_id, b["attention_mask"], b["labels"], b["position_ids"]); n.loss.backward()
    gn = {k: p.grad.clone() for k, p in cl.named_parameters() if p.grad is not None}
    m = b["attention_mask"].bool()
    torch.testing.assert_close(a.logits[m], n.logits[m], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.loss, n.loss, atol=1e-6, rtol=1e-5)
    assert set(ga) == set(gn) and len(ga) > 0
    for k in ga: torch.testing.assert_close(ga[k], gn[k], atol=1e-5, rtol=1e-4)
    assert a.n_thoughts.tolist() == ks


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_batch_equals_single_examples(family):
    "A batch with different numbers of thoughts gives each example what it gets alone (thoughts, logits)."
    cl, tok = _model(family)
    ks = [2, 0, 3]
    b = _batch(cl, tok, ks, seed=1)
    out = cl(**b)
    for i in range(len(ks)):
        m = b["attention_mask"][i].bool()
        one = cl(input_ids=b["input_ids"][i][m][None])
        torch.testing.assert_close(out.logits[i][m], one.logits[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.thoughts[i, :ks[i]], one.thoughts[0, :ks[i]], atol=1e-5, rtol=1e-4)


def _memorised(family):
    cl, tok = _model(family)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    ps = [enc("2+3*4?\n") + [cl.start_id] + [cl.latent_id] * 3 + [cl.end_id], enc("Is Tom a cat?\n") + [cl.start_id, cl.latent_id, cl.end_id],
          enc("7-1?\n") + [cl.start_id, cl.end_id], enc("x") + [cl.latent_id] * 2]
    tg = [enc(t) + [tok.eos_token_id] for t in ["### 14", "### a dog", "### 6", "### xyzzy plugh xyzzy"]]
    b = align_latents([p + t for p, t in zip(ps, tg)], cl.latent_id, cl.pad_id, [[-100] * len(p) + t for p, t in zip(ps, tg)])
    opt = torch.optim.AdamW(cl.parameters(), lr=1e-2); cl.train()
    for _ in range(60):
        loss = cl(**b).loss; opt.zero_grad(); loss.backward(); opt.step()
    return cl.eval(), tok, ps


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_generation_batched_single_naive(family):
    cl, tok, ps = _memorised(family)
    g = cl.generate(ps, max_new_tokens=12)
    assert g.tokens == [cl.generate([p], max_new_tokens=12).tokens[0] for p in ps]
    assert g.tokens == [naive_generate(cl.base, p, cl.latent_id, 12, tok.eos_token_id) for p in ps]
    assert [tok.decode(t) for t in g.tokens][:3] == ["### 14", "### a dog", "### 6"]
    assert g.finished == [True, True, True, False] and g.n_thoughts == [3, 1, 0, 2] and g.n_tokens[3] == 12
    lp = cl.next_token_logprobs(ps)
    assert lp.argmax(-1).tolist() == [t[0] for t in g.tokens]


def test_bad_prompts_and_batches():
    cl, tok = _model("gpt2")
    L = cl.latent_id
    with pytest.raises(LatentLMError, match="different columns"): cl(torch.tensor([[5, L, 6, 7], [5, 6, L, 7]]))
    with pytest.raises(LatentLMError, match="contiguous"): cl(torch.tensor([[5, L, 6, L]]))
    with pytest.raises(LatentLMError, match="first token"): cl(torch.tensor([[L, 6]]))
    with pytest.raises(LatentLMError, match="padding"):
        cl(torch.tensor([[0, L, 6]]), attention_mask=torch.tensor([[0, 1, 1]]))
    with pytest.raises(LatentLMError, match="not text"): cl.generate("what?")
    with pytest.raises(LatentLMError, match="non-empty"): cl.generate([[]])
    with pytest.raises(LatentLMError, match="add_coconut_tokens"): CoconutLM(tiny_gpt2(50), latent_id=70)
    # non-aligned blocks are fine once collated: align_latents left-pads them into one column
    b = align_latents([[5, L, 6, 7], [5, 6, L, 7]], L, cl.pad_id)
    assert latent_block(b["input_ids"], L, b["attention_mask"])[0] == 2


def test_reserved_tokens_in_data_rejected():
    tok = symbolic_tokenizer(10)
    rec = make_symbolic_prosqa(1, seed=0)[0]
    for field, val in [("question", rec["question"] + " " + LATENT), ("question", START_LATENT + rec["question"]),
                       ("answer", PAUSE), ("steps", rec["steps"] + [END_LATENT])]:
        with pytest.raises(LatentLMError, match="reserved token"):
            encode_record(tok, dict(rec, **{field: val}))


def test_no_steps_and_more_steps_than_stages():
    "A record without steps and one with more steps than max_latent_stage lay out correctly at every stage."
    ids = ThoughtTokens(latent=90, start=91, end=92, pause=93, pad=0)
    cur = Curriculum("coconut", c_thought=2, max_latent_stage=2)
    empty = {"idx": 0, "question": [1], "steps": [], "answer": [20, 21], "n_steps": 0}
    long = {"idx": 1, "question": [1], "steps": [[10], [11], [12], [13], [14]], "answer": [20, 21], "n_steps": 5}
    assert [build_sequence(empty, cur, ids, *cur.layout(0, s))[0] for s in range(4)] == [
        [1, 91, 92, 20, 21], [1, 91, 90, 90, 92, 20, 21], [1, 91] + [90] * 4 + [92, 20, 21], [1, 91] + [90] * 4 + [92, 20, 21]]
    assert [build_sequence(long, cur, ids, *cur.layout(5, s))[0] for s in range(4)] == [
        [1, 91, 92, 10, 11, 12, 13, 14, 20, 21], [1, 91, 90, 90, 92, 11, 12, 13, 14, 20, 21],
        [1, 91] + [90] * 4 + [92, 12, 13, 14, 20, 21], [1, 91] + [90] * 4 + [92, 20, 21]]
    # both in one batch (different question lengths): the latent blocks are aligned
    b = CoconutCollator(cur, ids)([dict(empty, question=[1, 2, 3]), long], stage=1)
    lat = b["input_ids"] == 90
    assert lat.sum(1).tolist() == [2, 2] and lat[0].float().argmax() == lat[1].float().argmax() == 4
    # with stage mixing a record without steps can only draw stage 0
    mixcol = CoconutCollator(Curriculum("coconut", c_thought=2, max_latent_stage=2, uniform_prob=1.0), ids)
    assert all(mixcol.layouts([dict(empty, idx=i)], 3) == [(0, 0)] for i in range(20))


def test_word_tokenizer_module_end_to_end_forward():
    "A CoconutModule built on symbolic data runs a forward on a collated stage batch with a finite loss and gradients."
    recs = make_symbolic_prosqa(16, seed=0)
    from latent_lm.coconut.data import symbolic_vocab
    m = CoconutModule(model="tiny-llama", d_model=32, max_latent_stage=3, uniform_prob=0.5).build(words=symbolic_vocab(10))
    enc = [m.encode(r, i) for i, r in enumerate(recs)]
    b = m.collator(enc, stage=2)
    out = m.coconut(**b)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.coconut.parameters() if p.grad is not None)
