"BLT model and generation: no future leakage, cached generation == recomputation, batch independence, bad input."
import copy, random
import pytest
import torch
import latent_lm.blt.model as blt_model
from latent_lm.core import LatentLMError
from latent_lm.blt.model import BLT, BLTConfig, max_future_leak, flops_per_byte, bpe_flops_per_byte, model_bits_per_byte
from latent_lm.blt.generate import generate, generate_recompute, generate_ids, incremental_logits, generation_speed, _as_prompt_ids
from latent_lm.blt.entropy import EntropyModel, EntropyModelConfig, NgramEntropyModel, entropies
from latent_lm.blt.patching import Patcher
from latent_lm.blt.tokenizer import ByteTokenizer, BOS_ID, EOS_ID, OFFSET

TOK = ByteTokenizer()
CONFIGS = {
    "default": dict(window_encoder=12, window_decoder=10),
    # h_E != h_D, k·h_E != h_G, two encoder layers, decoder cross-attention only before its first layer, no n-grams
    "variant": dict(dim_encoder=32, dim_decoder=48, dim_global=80, cross_attn_k=3, n_layers_encoder=2, n_heads_local=4,
                    n_heads_cross=2, cross_attn_all_layers_decoder=False, ngram_sizes=(), window_encoder=7, window_decoder=9),
    # plain max-pool (no encoder cross-attention), several hash functions
    "maxpool": dict(cross_attn_encoder=False, hash_functions=2, ngram_sizes=(3, 5), hash_buckets=257, window_encoder=64),
}


def make_blt(name="default", seed=0):
    torch.manual_seed(seed)
    return BLT(BLTConfig(max_seq_len=512, **CONFIGS[name])).eval()


@pytest.fixture(scope="module")
def em():
    torch.manual_seed(1)
    return EntropyModel(EntropyModelConfig(dim=32, n_layers=1, n_heads=2, window=16)).eval()


def _mid_threshold(em, text="The quick brown fox, 12 jumps!"):
    "A threshold halfway between two observed entropies (no entropy lies within float noise of it)."
    H = entropies(em, torch.tensor([TOK.encode(text, add_eos=False)]))[0].sort().values
    i = len(H) // 2
    return float(H[i - 1:i + 1].mean())


def _patchers(em):
    th = _mid_threshold(em)
    return {"static": Patcher("static", patch_size=4), "space": Patcher("space"),
            "entropy": Patcher("entropy", threshold=th), "entropy_max3": Patcher("entropy", threshold=th, max_patch_length=3),
            "monotonic": Patcher("monotonic", relative_threshold=0.01), "random": Patcher("random", p=0.3, seed=2)}


def _text_tokens(B=2, T=56, seed=0):
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "Zebra", "42", "naïve", "x,y", "—"]
    rows = []
    for _ in range(B):
        s = " ".join(rng.choice(words) for _ in range(40)).encode()
        rows.append(([BOS_ID] + [b + OFFSET for b in s])[:T])
    return torch.tensor(rows)


# --- no future leakage ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CONFIGS))
def test_no_future_leakage_fixed_patch_lengths(name):
    model = make_blt(name)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(OFFSET, 256 + OFFSET, (2, 50), generator=g); x[:, 0] = BOS_ID
    rows = []
    for _ in range(2):                                   # random patches: BOS alone, then lengths 1..7, next byte included
        L, tot = [1], 1
        while tot < 51:
            n = min(int(torch.randint(1, 8, (), generator=g)), 51 - tot); L.append(n); tot += n
        rows.append(torch.tensor(L))
    pl = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    ts = torch.randint(0, 49, (25,), generator=g).tolist() + [0, 1, 48]
    assert max_future_leak(model, x, lambda _: pl, ts) < 1e-5


@pytest.mark.parametrize("mode", ["static", "space", "entropy", "entropy_max3", "monotonic", "random"])
def test_no_future_leakage_recomputed_patches(em, mode):
    "Patches recomputed on the perturbed bytes by an incremental patcher (and its entropy model) never leak either."
    model = make_blt()
    pt = copy.copy(_patchers(em)[mode]); pt.include_next_token = True
    fn = lambda x: pt.patch_lengths(x, entropies(em, x) if pt.needs_entropies else None)
    x = _text_tokens()
    ts = random.Random(3).sample(range(x.shape[1] - 1), 15) + [0, 1]
    assert max_future_leak(model, x, fn, ts) < 1e-5


def test_leak_test_catches_a_decoder_reading_its_own_open_patch(monkeypatch):
    model = make_blt()
    x = _text_tokens()
    pl = Patcher("static", patch_size=4, include_next_token=True).patch_lengths(x)
    monkeypatch.setattr(blt_model, "decoder_patch_index", lambda pid: pid[:, :-1])
    assert max_future_leak(model, x, lambda _: pl, [3, 10, 20, 30]) > 1e-3


def test_document_packing_is_invisible():
    "A document packed after another gets its stand-alone logits (document masks everywhere, patches start at BOS)."
    model = make_blt()
    d1, d2 = TOK.encode("first doc, with words."), TOK.encode("second one here", add_eos=False)
    pt = Patcher("space", include_next_token=True)
    packed, alone = torch.tensor([d1 + d2]), torch.tensor([d2])
    with torch.no_grad():
        a = model(packed, pt.patch_lengths(packed))[0, len(d1):]
        b = model(alone, pt.patch_lengths(alone))[0]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


# --- cached generation == recomputation -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["static", "space", "entropy", "entropy_max3", "random"])
def test_incremental_logits_match_full_forward(em, mode):
    "Teacher-forced: the stepper's logits at every position equal the full forward (two documents, ring buffers wrap)."
    model = make_blt()
    pt = _patchers(em)[mode]
    x = torch.tensor([TOK.encode("one doc, two docs. ") + TOK.encode("Second document here!", add_eos=False)] * 2)
    x[1, 5:9] = torch.tensor([OFFSET + 32, OFFSET + 120, EOS_ID, BOS_ID])
    lg, pl = incremental_logits(model, em, pt, x)
    ref = copy.copy(pt); ref.include_next_token = True
    assert torch.equal(pl, ref.patch_lengths(x, entropies(em, x) if pt.needs_entropies else None))
    with torch.no_grad():
        torch.testing.assert_close(lg, model(x, pl), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("mode", ["entropy", "static", "space"])
def test_cached_generation_equals_recompute_greedy(em, name, mode):
    model = make_blt(name)
    pt = _patchers(em)[mode]
    ids = _as_prompt_ids(["The cat sat on", "Hello, world! ", "a"])
    a = generate_ids(model, em, pt, ids, 36, method="cached")
    b = generate_ids(model, em, pt, ids, 36, method="recompute")
    assert a.ids == b.ids
    assert a.patch_starts == b.patch_starts
    assert all(len(g) == 36 or g[-1] == EOS_ID for g in a.ids)
    assert sum(a.global_steps) < sum(b.global_steps)          # one global step per patch vs every patch at every byte


def test_cached_generation_equals_recompute_with_ngram_entropy_model():
    model = make_blt()
    ng = NgramEntropyModel(n=3).fit([TOK.encode("the cat sat on the mat. " * 3), TOK.encode("a dog ran far away.")])
    th = _mid_threshold(ng)
    pt = Patcher("entropy", threshold=th, max_patch_length=5)
    p = ["the cat", "a dog ran"]
    assert generate(model, ng, pt, p, 30) == generate_recompute(model, ng, pt, p, 30)


def test_cached_generation_equals_recompute_sampling(em):
    model = make_blt()
    pt = _patchers(em)["entropy"]
    p = ["The cat sat on", "xyz"]
    a = generate(model, em, pt, p, 30, temperature=0.8, top_p=0.9, seed=7)
    assert a == generate_recompute(model, em, pt, p, 30, temperature=0.8, top_p=0.9, seed=7)
    assert a == generate(model, em, pt, p, 30, temperature=0.8, top_p=0.9, seed=7)          # same seed, same bytes
    assert a != generate(model, em, pt, p, 30, temperature=0.8, top_p=0.9, seed=8)


def test_batch_rows_do_not_leak_into_each_other(em):
    "Official-code bug #123: batched generation must equal generating each prompt alone."
    model = make_blt()
    pt = _patchers(em)["entropy"]
    prompts = ["The cat sat on", "Hello", "The cat sat on"]
    batch = generate(model, em, pt, prompts, 25)
    assert batch == [generate(model, em, pt, [p], 25)[0] for p in prompts]
    assert batch[0] == batch[2]


def test_generation_speed_entry_point(em):
    model = make_blt()
    r = generation_speed(model, em, _patchers(em)["entropy"], n_bytes=24, prompt="ab")
    assert r["identical"] and r["seconds_cached"] > 0 and r["seconds_recompute"] > 0
    assert r["global_steps_cached"] <= 24 + 2


# --- bad input ---------------------------------------------------------------------------------------------------------

def test_bad_generation_input(em):
    model = make_blt()
    pt = _patchers(em)["entropy"]
    with pytest.raises(LatentLMError, match="empty list of prompts"): generate(model, em, pt, [], 5)
    with pytest.raises(LatentLMError, match="prompt 1 is empty"): generate(model, em, pt, ["ok", ""], 5)
    with pytest.raises(LatentLMError, match="model's context is 512 bytes"): generate(model, em, pt, ["x" * 600], 5)
    with pytest.raises(LatentLMError, match="lower max_new_bytes"): generate(model, em, pt, ["x" * 500], 100)
    with pytest.raises(LatentLMError, match="needs an entropy model"): generate(model, None, pt, ["abc"], 5)
    with pytest.raises(LatentLMError, match="not incremental"): generate(model, em, Patcher("topk", patch_size=4), ["abc"], 5)
    with pytest.raises(LatentLMError, match="str or bytes"): generate(model, em, pt, [123], 5)
    with pytest.raises(LatentLMError, match="top_p"): generate(model, em, pt, ["abc"], 5, temperature=1.0, top_p=0)
    assert generate(model, None, Patcher("space"), [b"\xff\xfe invalid utf-8"], 3) is not None   # any bytes are fine


def test_bad_forward_input():
    model = make_blt()
    x = torch.tensor([TOK.encode("hello")])
    with pytest.raises(LatentLMError, match="must sum to 7 or 8"): model(x, torch.tensor([[1, 2]]))
    with pytest.raises(LatentLMError, match="max_seq_len=512"): model(torch.ones(1, 600, dtype=torch.long), torch.tensor([[600]]))
    with pytest.raises(LatentLMError, match="token ids must lie"): model(x + 300, torch.tensor([[7]]))
    with pytest.raises(LatentLMError, match="integer tensor"): model(x.float(), torch.tensor([[7]]))


# --- FLOPs and BPB ------------------------------------------------------------------------------------------------------

def test_flops_per_byte_matches_a_bpe_model_of_the_global_shape():
    c = BLTConfig(dim_encoder=48, dim_global=96, dim_decoder=48, n_heads_local=4, n_heads_global=4, n_heads_cross=4)
    f = flops_per_byte(c, patch_size=6, n_ctx=1200)
    assert f["global"] == pytest.approx(bpe_flops_per_byte(96, c.n_layers_global, 200, 0, 6.0))
    assert f["total"] == pytest.approx(sum(v for k, v in f.items() if k != "total"))
    assert flops_per_byte(c, 6, 1200, train=True)["total"] == pytest.approx(3 * f["total"])
    assert "entropy_model" in flops_per_byte(c, 6, 1200, entropy=(32, 1, 16))
    with pytest.raises(LatentLMError): flops_per_byte(c, 0.5)


def test_bpb_of_untrained_model_is_near_uniform():
    model = make_blt()
    x = _text_tokens(T=40)
    pl = Patcher("space", include_next_token=True).patch_lengths(x[:, :-1])
    assert 7.0 < model_bits_per_byte(model, x, pl) < 9.5


# --- command line -------------------------------------------------------------------------------------------------------

def test_generate_command_from_a_bundle_cached_equals_recompute(em, tmp_path, capsys):
    import json
    from latent_lm.blt.app import generate as generate_cmd
    from latent_lm.blt.train import save_blt_bundle
    model = make_blt()
    save_blt_bundle(tmp_path / "blt_bundle", model, em, _patchers(em)["entropy"])
    outs = {}
    for method in ("cached", "recompute"):
        out = tmp_path / f"{method}.jsonl"
        assert generate_cmd(str(tmp_path), ["The cat", "Hi there"], max_new_bytes=16, method=method, out=str(out)) == 0
        outs[method] = [json.loads(l)["completion"] for l in out.read_text().splitlines()]
    assert outs["cached"] == outs["recompute"] and len(outs["cached"]) == 2
    old = tmp_path / "first_version.pt"           # a model file of the first version (plain data, read with weights_only=True)
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, old)
    assert generate_cmd(str(old), ["abc"], mode="space", max_new_bytes=4) == 0
    assert "abc\u2502" in capsys.readouterr().out
    with pytest.raises(LatentLMError, match="no saved patcher"):
        generate_cmd(str(old), ["abc"])
