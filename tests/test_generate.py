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


def test_per_prompt_seeds_independent_of_position_and_company(lm):
    "With one seed per prompt, a prompt's samples depend on its seed alone (what a resumed pipeline relies on)."
    m, tok = lm
    kw = dict(n=2, temperature=1.1, top_p=0.95, max_new_tokens=10)
    ids = lambda rows: [[c.token_ids for c in r] for r in rows]
    full = HFGenerator(m, tok, batch_size=3).generate(PROMPTS, seed=[10, 20, 30, 40], **kw)
    for k in range(len(PROMPTS)):
        alone = HFGenerator(m, tok, batch_size=2).generate([PROMPTS[k]], seed=[10 * (k + 1)], **kw)
        assert ids(alone) == ids([full[k]])
    rev = HFGenerator(m, tok, batch_size=5).generate(PROMPTS[::-1], seed=[40, 30, 20, 10], **kw)
    assert ids(rev[::-1]) == ids(full)
    assert ids(HFGenerator(m, tok).generate(PROMPTS[:1], seed=[11], **kw)) != ids(full[:1])   # another seed, other samples
    with pytest.raises(LatentLMError, match="one seed per prompt"): HFGenerator(m, tok).generate(PROMPTS, seed=[1])
    with pytest.raises(LatentLMError, match="list of ints"): HFGenerator(m, tok).generate(PROMPTS[:1], seed=[1.5])
    with pytest.raises(LatentLMError, match="seed must be an int"): HFGenerator(m, tok).generate(PROMPTS[:1], seed="7")


def test_int_seed_keeps_its_meaning(lm):
    "An int seed still seeds sample j of prompt i from (seed, i, j): position matters, as before."
    from latent_lm.generate import row_seed, sample_seed
    assert row_seed(5, 2, 1) == sample_seed(5, 2, 1)
    assert row_seed([7, 8, 9], 2, 1) == row_seed([9], 0, 1) != row_seed([9], 0, 0)
    fg = FunctionGenerator(lambda p, rng: f"{rng.random():.8f}")
    a = fg.generate(["x", "y"], n=2, seed=3)
    assert [c.text for c in a[1]] != [c.text for c in fg.generate(["y"], n=2, seed=3)[0]]    # position 1 vs 0
    b = fg.generate(["x", "y"], n=2, seed=[4, 5])
    assert [c.text for c in b[1]] == [c.text for c in fg.generate(["y"], n=2, seed=[5])[0]]


def test_vllm_gets_per_prompt_seeds():
    "VLLMGenerator passes each prompt the same per-prompt seed as the other backends (a stand-in for vllm's engine)."
    import types
    from latent_lm.generate import VLLMGenerator, row_seed
    seen = []
    class LLM:
        def generate(self, prompts, params, use_tqdm=True):
            seen.extend(params)
            out = types.SimpleNamespace(text="ok", token_ids=[1], finish_reason="stop", cumulative_logprob=-1.0, logprobs=None)
            return [types.SimpleNamespace(outputs=[out] * p["n"]) for p in params]
    g = VLLMGenerator.__new__(VLLMGenerator)
    g._vllm = types.SimpleNamespace(SamplingParams=lambda **kw: kw)
    g.llm, g.tokenizer, g.processed, g.max_len = LLM(), __import__("latent_lm.lm", fromlist=["tiny_tokenizer"]).tiny_tokenizer(), False, None
    g.generate(["a", "b"], n=2, seed=[7, 8], chat=False)
    g.generate(["b"], n=2, seed=[8], chat=False)
    assert [p["seed"] for p in seen] == [row_seed([7, 8], 0, 0), row_seed([7, 8], 1, 0), row_seed([8], 0, 0)]
    assert seen[1]["seed"] == seen[2]["seed"]


def _reset_setup(lm):
    "A reset token chosen among the greedy outputs so that prompts of one batch hold different numbers of it."
    m, tok = lm
    ids = [r[0].token_ids for r in HFGenerator(m, tok, batch_size=4).generate(PROMPTS, temperature=0, max_new_tokens=24)]
    counts = {t: [s.count(t) for s in ids] for t in {t for s in ids for t in s}}
    rid = max(counts, key=lambda t: len(set(counts[t])))
    assert len(set(counts[rid])) >= 2, counts[rid]
    return m, tok, ids, rid


def test_reset_aware_text_in_batches(lm):
    m, tok, ids, rid = _reset_setup(lm)
    rg = HFGenerator(m, tok, batch_size=4, reset_token=rid)
    res = rg.generate(PROMPTS, temperature=0, max_new_tokens=24)
    for c, s in zip((r[0] for r in res), ids):
        assert c.token_ids == s
        pos = [k for k, t in enumerate(s) if t == rid]
        assert c.reset_positions == pos and c.resets == len(pos)
        body = s[:-1] if s[-1] == tok.eos_token_id else s
        assert c.text == (rg.decode(body[pos[-1] + 1:]) if pos else rg.decode(body))
        assert c.raw_text == rg.decode(body)
    assert len({r[0].resets for r in res}) >= 2          # the batch mixes reset counts


def test_reset_aware_streaming(lm):
    m, tok, ids, rid = _reset_setup(lm)
    rg = HFGenerator(m, tok, batch_size=3, reset_token=rid)
    res = rg.generate(PROMPTS, n=2, temperature=1.0, max_new_tokens=24, seed=3)
    evs = list(rg.stream(PROMPTS, n=2, temperature=1.0, max_new_tokens=24, seed=3))
    shown = {}
    for e in evs:
        k = (e.prompt, e.sample)
        shown[k] = "" if e.reset else shown.get(k, "") + e.delta
        if not e.done: assert shown[k] == e.text
    for i, row in enumerate(res):
        for j, c in enumerate(row):
            assert shown[(i, j)] == c.text
            assert sum(e.reset for e in evs if (e.prompt, e.sample) == (i, j)) == c.resets
            assert next(e.completion for e in evs if e.done and (e.prompt, e.sample) == (i, j)).token_ids == c.token_ids


def test_logit_bias_and_missing_reset_token(lm):
    m, tok, ids, rid = _reset_setup(lm)
    assert HFGenerator(m, tok, logit_bias={rid: 1e4}).generate(PROMPTS[:1], temperature=0, max_new_tokens=4)[0][0].token_ids == [rid] * 4
    ban = HFGenerator(m, tok, reset_token=rid, logit_bias={rid: float("-inf")})
    assert sum(c.resets for r in ban.generate(PROMPTS, n=3, temperature=1.0, max_new_tokens=24, seed=0) for c in r) == 0
    with pytest.raises(LatentLMError, match="add_reset_token"): HFGenerator(m, tok, reset_token="[RESET]")
    with pytest.raises(LatentLMError, match="not a token id"): HFGenerator(m, tok, logit_bias={10**6: 1.0})
    with pytest.raises(LatentLMError, match="inf"): HFGenerator(m, tok, logit_bias={1: float("inf")})


def test_prefill(lm):
    m, tok, ids, rid = _reset_setup(lm)
    g = HFGenerator(m, tok, reset_token=rid)
    pf = g.generate(PROMPTS[:2], temperature=0, max_new_tokens=10, prefill=["Sure, here", None])
    ref = g.generate([g.format_prompt(PROMPTS[0]) + "Sure, here"], chat=False, temperature=0, max_new_tokens=10)[0][0]
    assert pf[0][0].token_ids == ref.token_ids and pf[0][0].prefill == "Sure, here"
    assert pf[0][0].raw_text == "Sure, here" + ref.raw_text
    assert pf[1][0].token_ids == ids[1][:10]
    with pytest.raises(LatentLMError, match="one entry per prompt"): g.generate(PROMPTS, prefill=["x"])
    with pytest.raises(LatentLMError, match="does not support prefill"): FunctionGenerator(lambda p: p).generate(["a"], prefill=["x"])


def test_base_stream_yields_done_events():
    fg = FunctionGenerator(lambda p: p.upper())
    evs = list(fg.stream(["ab", "cd"], n=2, chat=False))
    assert [(e.prompt, e.sample, e.text, e.done) for e in evs] == [(0, 0, "AB", True), (0, 1, "AB", True), (1, 0, "CD", True), (1, 1, "CD", True)]


def test_sampled_temperatures_do_not_depend_on_batch_size(lm):
    "A temperature_fn that samples with the generator's per-(prompt, sample) uniforms `u`: batch size 1 and 4 agree exactly."
    m, tok = lm
    def make():
        state = {}
        def fn(h, step, rows, u):
            assert u.shape == (h.shape[0],) and bool(((u >= 0) & (u < 1)).all())
            if step == 0: state["tau"] = torch.where(u.cpu() < 0.5, 0.3, 1.5)   # one draw per sequence, kept
            return state["tau"][rows.cpu()]
        return fn
    kw = dict(n=3, max_new_tokens=8, seed=5)
    one = HFGenerator(m, tok, batch_size=1, temperature_fn=make()).generate(PROMPTS, **kw)
    four = HFGenerator(m, tok, batch_size=4, temperature_fn=make()).generate(PROMPTS, **kw)
    flat = lambda rs: [(c.token_ids, c.temperatures) for r in rs for c in r]
    assert flat(one) == flat(four)
    assert len({c.temperatures[0] for r in one for c in r}) == 2          # both temperatures drawn across samples
    # the token draws are unchanged by the hook's stream: a constant hook of 1.0 samples as temperature=1.0
    const = HFGenerator(m, tok, batch_size=2, temperature_fn=lambda h, step, u: torch.ones(h.shape[0])).generate(PROMPTS, **kw)
    plain = HFGenerator(m, tok, batch_size=3).generate(PROMPTS, temperature=1.0, **kw)
    assert [c.token_ids for r in const for c in r] == [c.token_ids for r in plain for c in r]
