"BLT the Hugging Face way (blt.model save_pretrained / from_pretrained) and conversion to and from transformers' BltForCausalLM."
import json
import pytest
import torch
from latent_lm.core import LatentLMError
from latent_lm.blt.tokenizer import BOS_ID
from latent_lm.blt.model import BLT, BLTConfig, load_pretrained, load_blt
from latent_lm.blt.entropy import EntropyModel, EntropyModelConfig, NgramEntropyModel, load_entropy_model, entropies
from latent_lm.blt.patching import Patcher
from latent_lm.blt.hf import from_hf_blt, to_hf_blt, hf_config, lengths_from_hf, lengths_to_hf
from latent_lm.blt.generate import incremental_logits

OFFICIAL = dict(dim_encoder=32, dim_global=96, dim_decoder=32, n_layers_encoder=2, n_layers_global=2, n_layers_decoder=2, n_heads_local=2,
                n_heads_global=4, n_heads_cross=2, window_encoder=12, window_decoder=12, ngram_sizes=(3, 5), hash_buckets=97,
                hash_functions=2, cross_attn_k=2, max_seq_len=256, hash_int64=True, cross_attn_inner_residual=True)


def _perturb_norms(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.dim() == 1: p.add_(0.1 * torch.randn(p.shape, generator=g))
    return m


@pytest.fixture(scope="module")
def hf_pair():
    from transformers import BltForCausalLM
    torch.manual_seed(0)
    cfg = hf_config(BLTConfig(**OFFICIAL), EntropyModelConfig(dim=32, n_layers=1, n_heads=2, window=10), Patcher("entropy", threshold=5.0))
    hf = _perturb_norms(BltForCausalLM(cfg).eval(), 0)
    return hf, from_hf_blt(hf)


def _tokens(B=2, T=36, seed=0):
    x = torch.randint(4, 260, (B, T), generator=torch.Generator().manual_seed(seed)); x[:, 0] = BOS_ID
    return x


def test_save_pretrained_round_trip_identical_logits(tmp_path):
    torch.manual_seed(0)
    m = _perturb_norms(BLT(BLTConfig(dim_encoder=32, dim_global=64, dim_decoder=32, n_layers_global=1, n_layers_decoder=1,
                                     window_encoder=16, window_decoder=16, hash_buckets=64, max_seq_len=64)).eval(), 1)
    em, ng = EntropyModel(EntropyModelConfig(dim=16, n_layers=1, n_heads=2, window=8)).eval(), NgramEntropyModel(n=2)
    ng.update(_tokens())
    pat = Patcher("entropy", threshold=3.0, max_patch_length=6, include_next_token=True)
    m.save_pretrained(tmp_path / "m", patcher=pat, entropy_model=em)
    got = load_pretrained(tmp_path / "m")
    x, L = _tokens(T=30), torch.tensor([[1, 5, 5, 5, 5, 5, 5], [1, 29, 1, 0, 0, 0, 0]])
    with torch.no_grad():
        assert torch.equal(got["model"](x, L), m(x, L)) and torch.equal(BLT.from_pretrained(tmp_path / "m")(x, L), m(x, L))
        assert torch.equal(got["entropy_model"](x), em(x))
    assert got["patcher"].to_dict() == pat.to_dict() and got["model"].config == m.config
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "entropy_model", "model.safetensors"]
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in tmp_path.rglob("*"))          # nothing pickled
    ng.save_pretrained(tmp_path / "ng")
    assert torch.equal(load_entropy_model(tmp_path / "ng")(x), ng(x))
    assert torch.equal(load_blt(tmp_path / "m")(x, L), m(x, L))


@pytest.mark.parametrize("edit,msg", [
    (lambda c: c["blt"].pop("window_encoder"), "missing fields: window_encoder"),
    (lambda c: c["blt"].update(cross_attn_kk=2), "unknown fields: cross_attn_kk"),
    (lambda c: c["blt"].update(dim_global=48), "the weights do not match the BLT"),
    (lambda c: c["blt"].update(n_heads_local=3), "must be a multiple of"),
    (lambda c: c.update(model_type="latent_lm_blt_entropy"), "model_type 'latent_lm_blt_entropy', not 'latent_lm_blt'"),
    (lambda c: c.pop("model_type"), "model_type None"),
    (lambda c: c.update(blt=None), "the BLT config is missing"),
    (lambda c: c.update(patcher={"mode": "entropy"}), "bad patcher settings"),
    (lambda c: c.update(entropy_model="elsewhere"), "which is missing"),
])
def test_missing_or_mismatched_config_is_a_clear_error(tmp_path, edit, msg):
    m = BLT(BLTConfig(dim_encoder=16, dim_global=32, dim_decoder=16, n_layers_global=1, n_layers_decoder=1, n_heads_local=2,
                      n_heads_global=2, n_heads_cross=2, hash_buckets=16, max_seq_len=32))
    m.save_pretrained(tmp_path, patcher=Patcher("space"))
    c = json.loads((tmp_path / "config.json").read_text()); edit(c); (tmp_path / "config.json").write_text(json.dumps(c))
    with pytest.raises(LatentLMError, match=msg): load_pretrained(tmp_path)


def test_no_config_is_a_clear_error(tmp_path):
    BLT(BLTConfig(dim_encoder=16, dim_global=32, dim_decoder=16, n_heads_local=2, n_heads_cross=2, hash_buckets=16)).save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(LatentLMError, match="has no config.json"): BLT.from_pretrained(tmp_path)


def test_random_transformers_blt_gives_the_same_logits(hf_pair):
    hf, got = hf_pair
    x, hl = _tokens(T=36), torch.tensor([[1, 3, 5, 2, 8, 4, 6, 7, 0], [1, 5, 5, 5, 5, 5, 5, 5, 0]])
    with torch.no_grad():
        ref = hf(x, patch_lengths=hl, use_cache=False).logits
        out = got["model"](x, lengths_from_hf(hl))
    assert ref.abs().max() > 1 and torch.allclose(out, ref, atol=1e-4, rtol=0)
    # its own entropy patching inside transformers' forward = the converted entropy model + patcher here
    xs = _tokens(B=1, T=48, seed=1)
    with torch.no_grad():
        ent = entropies(got["entropy_model"], xs)
        th = float(ent[0, 1:].median())
        hf.config.patching_threshold = th
        L = Patcher("entropy", threshold=th, include_next_token=True).patch_lengths(xs, ent)
        assert 10 < (L > 0).sum() < 40
        assert torch.allclose(got["model"](xs, L), hf(xs, use_cache=False).logits, atol=1e-4, rtol=0)


def test_latent_lm_blt_to_transformers_and_back(hf_pair):
    _, got = hf_pair
    torch.manual_seed(3)
    mine = _perturb_norms(BLT(BLTConfig(**OFFICIAL)).eval(), 3)
    hf = to_hf_blt(mine, got["entropy_model"], got["patcher"])
    x, L = _tokens(T=36, seed=2), torch.tensor([[1, 7, 7, 7, 7, 7, 1], [1, 3, 9, 9, 9, 5, 1]])
    with torch.no_grad():
        assert torch.allclose(hf(x, patch_lengths=lengths_to_hf(L, 36), use_cache=False).logits, mine(x, L), atol=1e-4, rtol=0)
    back = from_hf_blt(hf)
    assert all(torch.equal(back["model"].state_dict()[k], v) for k, v in mine.state_dict().items())
    with torch.no_grad():                                   # the converted model generates incrementally like any BLT
        lg, Li = incremental_logits(back["model"], back["entropy_model"], back["patcher"], x[:1, :24])
        assert torch.allclose(lg, back["model"](x[:1, :24], Li), atol=1e-4, rtol=0)


def test_unconvertible_models_are_refused():
    with pytest.raises(LatentLMError, match="the same number of patches"): lengths_to_hf(torch.tensor([[1, 4, 1], [1, 5, 0]]), 5)
    with pytest.raises(LatentLMError, match="hash_int64=False, cross_attn_inner_residual=False"): to_hf_blt(BLT(BLTConfig()))
    with pytest.raises(LatentLMError, match="window_encoder .* must equal"):
        hf_config(BLTConfig(**{**OFFICIAL, "window_decoder": 8}))
    with pytest.raises(LatentLMError, match="n-gram entropy model does not convert"):
        to_hf_blt(BLT(BLTConfig(**OFFICIAL)), NgramEntropyModel(n=2))


def test_convert_command_round_trip_and_bad_input(hf_pair, tmp_path, capsys):
    from latent_lm.cli import main
    hf, _ = hf_pair
    hf.save_pretrained(tmp_path / "hf")
    assert main(["blt", "convert", "--model", str(tmp_path / "hf"), "--out", str(tmp_path / "ours")]) == 0
    got = load_pretrained(tmp_path / "ours")
    x = _tokens(B=1, T=30, seed=4)
    with torch.no_grad():
        L = got["patcher"].patch_lengths(x, entropies(got["entropy_model"], x))
        assert torch.allclose(got["model"](x, L), hf(x, use_cache=False).logits, atol=1e-4, rtol=0)
    assert main(["blt", "convert", "--model", str(tmp_path / "ours"), "--out", str(tmp_path / "back"), "--to", "transformers"]) == 0
    for argv, msg in ([["--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o1")], "is not a model folder"],
                      [["--model", str(tmp_path / "hf"), "--out", str(tmp_path / "o2"), "--to", "gguf"], "to must be"],
                      [["--model", str(tmp_path / "hf"), "--out", str(tmp_path / "ours")], "exists and is not empty"]):
        capsys.readouterr()
        assert main(["blt", "convert", *argv]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
