"Generator: cached vs uncached greedy equivalence, seeds, stop strings and clear errors on a tiny model."
import json, pytest, torch
from dataclasses import asdict
from latent_lm.core import LatentLMError
from latent_lm.lm import tiny_lm, chat_prompt, encode_prompt, sequence_logprobs
from latent_lm.generate import HFGenerator, FunctionGenerator, Completion, sample_next


@pytest.fixture(scope="module")
def lm():
    m, tok = tiny_lm(seed=2, max_len=128)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():                       # widen the init so that greedy outputs vary from token to token
        for p in m.parameters():
            if p.dim() == 2: p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m, tok


PROMPTS = ["a", "Tell me about foxes.", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
           "A longer prompt, so that the batch needs left padding."]


def test_cached_equals_uncached_greedy(lm):
    m, tok = lm
    kw = dict(temperature=0, max_new_tokens=20)
    cached = HFGenerator(m, tok, batch_size=4).generate(PROMPTS, **kw)
    uncached = HFGenerator(m, tok, batch_size=4, use_cache=False).generate(PROMPTS, **kw)
    alone = HFGenerator(m, tok, batch_size=1).generate(PROMPTS, **kw)
    for a, b, c in zip(cached, uncached, alone):
        assert a[0].token_ids == b[0].token_ids == c[0].token_ids
        assert a[0].model_logprob == pytest.approx(b[0].model_logprob, abs=1e-4)
    assert len({tuple(r[0].token_ids) for r in cached}) == len(PROMPTS)    # the outputs really differ


def test_greedy_matches_hf_generate_and_scoring(lm):
    m, tok = lm
    c = HFGenerator(m, tok).generate([PROMPTS[1]], temperature=0, max_new_tokens=15)[0][0]
    p = encode_prompt(tok, chat_prompt(tok, PROMPTS[1]))
    ref = m.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), max_new_tokens=15,
                     do_sample=False, pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
    assert c.token_ids == ref
    x = torch.tensor([p + c.token_ids]); cm = torch.zeros_like(x); cm[0, len(p):] = 1
    with torch.no_grad(): lp = sequence_logprobs(m, x, torch.ones_like(x), cm).item()
    assert c.logprob == pytest.approx(lp, abs=1e-4)


def test_seeded_sampling_independent_of_batch_size(lm):
    m, tok = lm
    kw = dict(n=3, temperature=1.2, top_p=0.9, max_new_tokens=12, seed=11)
    a = HFGenerator(m, tok, batch_size=1).generate(PROMPTS, **kw)
    b = HFGenerator(m, tok, batch_size=7).generate(PROMPTS, **kw)
    assert [[c.token_ids for c in r] for r in a] == [[c.token_ids for c in r] for r in b]
    assert all(len(r) == 3 for r in a)


def test_greedy_n_copies_are_independent_objects(lm):
    m, tok = lm
    r = HFGenerator(m, tok).generate(["x"], n=2, temperature=0, max_new_tokens=4)[0]
    assert r[0] == r[1] and r[0] is not r[1]


def test_stop_string_cut(lm):
    m, tok = lm
    gen = HFGenerator(m, tok)
    full = gen.generate(["hello"], temperature=0, max_new_tokens=30, chat=False)[0][0]
    # an ASCII character from the middle (a byte token decodes to it alone, so the streaming check sees what the end sees)
    s = next(ch for ch in full.text[len(full.text) // 2:] if ch.isascii() and ch.isprintable())
    cut = gen.generate(["hello"], temperature=0, max_new_tokens=30, chat=False, stop=s)[0][0]
    assert cut.text == full.text[:full.text.find(s)] and cut.finish_reason == "stop"
    assert cut.token_ids == full.token_ids[:cut.num_tokens]


def test_temperature_fn_recorded(lm):
    m, tok = lm
    calls = []
    def tfn(h, step):
        calls.append(step); return torch.full((h.shape[0],), 0.5 if step % 2 else 0.0)
    r = HFGenerator(m, tok, temperature_fn=tfn).generate(PROMPTS[:2], max_new_tokens=6, seed=0)
    assert calls[0] == 0
    for c in (x[0] for x in r): assert c.temperatures == [0.0 if t % 2 == 0 else 0.5 for t in range(c.num_tokens)]


def test_errors(lm):
    m, tok = lm
    gen = HFGenerator(m, tok)
    with pytest.raises(LatentLMError, match="empty list of prompts"): gen.generate([])
    with pytest.raises(LatentLMError, match=r"Prompt 1 has 200 tokens.*context of 128"): gen.generate(["ok", "y" * 200], chat=False)
    with pytest.raises(LatentLMError, match="single string"): gen.generate("just one prompt")
    with pytest.raises(LatentLMError, match="temperature"): gen.generate(["ok"], temperature=-1)
    with pytest.raises(LatentLMError, match="top_p"): gen.generate(["ok"], top_p=2)
    with pytest.raises(LatentLMError, match="max_new_tokens"): gen.generate(["ok"], max_new_tokens=0)
    with pytest.raises(ValueError): gen.generate(["ok"], n=-2)      # LatentLMError is a ValueError


def test_top_p_tiny_is_greedy():
    torch.manual_seed(0)
    lg = torch.randn(5, 50)
    tok, _, _ = sample_next(lg, 1.0, 1e-12, torch.rand(5, dtype=torch.float64))
    assert tok.tolist() == lg.argmax(-1).tolist()


def test_completion_is_json_and_function_generator(lm):
    m, tok = lm
    c = HFGenerator(m, tok).generate(["x"], n=2, temperature=0.9, max_new_tokens=5, seed=1)[0][1]
    assert isinstance(c, Completion) and json.loads(json.dumps(asdict(c)))["token_ids"] == c.token_ids
    fg = FunctionGenerator(lambda p, rng: f"{rng.random():.6f} END tail")
    a, b = fg.generate(["p"], n=2, seed=4, stop=" END")[0]
    assert a.text != b.text and a.finish_reason == "stop" and "END" not in a.text
    assert [c.text for c in fg.generate(["p"], n=2, seed=4, stop=" END")[0]] == [a.text, b.text]
