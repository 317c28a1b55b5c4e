"Coconut as a Hugging Face model: save_pretrained / from_pretrained round trip, the HF Trainer, seeded sampling, text prompts, bad folders."
import json, shutil
import pytest
import torch
from latent_lm.core import LatentLMError
from latent_lm.lm import tiny_lm, tiny_tokenizer
from latent_lm.coconut.model import CoconutLM, CoconutConfig, CoconutOutput, align_latents, tiny_gpt2

TARGETS = ["### 14", "### a dog", "### 6", "### xyzzy plugh"]


def _memorised(family):
    "A tiny Coconut model that has memorised one continuation per prompt (so greedy and sampled outputs are not degenerate)."
    torch.manual_seed(0)
    if family == "gpt2":
        tok = tiny_tokenizer("bytes")
        base = tiny_gpt2(len(tok), d_model=32, n_layers=2, n_heads=4, seed=0, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    else:
        base, tok = tiny_lm("bytes", d_model=32, n_layers=2, n_heads=4, seed=0)
    cl = CoconutLM.wrap(base, tok, init_token=None, n_thoughts=2)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    mid = lambda k: [cl.start_id] + [cl.latent_id] * k + [cl.end_id]
    ps = [enc("2+3*4?\n") + mid(3), enc("Is Tom a cat or a dog?\n") + mid(2), enc("7-1?\n") + mid(0), enc("x\n") + mid(1)]
    tg = [enc(t) + [tok.eos_token_id] for t in TARGETS]
    b = align_latents([p + t for p, t in zip(ps, tg)], cl.latent_id, cl.pad_id, [[-100] * len(p) + t for p, t in zip(ps, tg)])
    opt = torch.optim.AdamW(cl.parameters(), lr=1e-2); cl.train()
    for _ in range(60):
        loss = cl(**b).loss; opt.zero_grad(); loss.backward(); opt.step()
    return cl.eval(), tok, ps


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def memorised(request):
    return _memorised(request.param)


def test_output_is_a_model_output(memorised):
    cl, tok, ps = memorised
    b = align_latents(ps, cl.latent_id, cl.pad_id, [p[:] for p in ps])
    out = cl(**b)
    from transformers.utils import ModelOutput
    from transformers import PreTrainedModel
    assert isinstance(out, ModelOutput) and isinstance(cl, PreTrainedModel) and isinstance(cl.config, CoconutConfig)
    assert out[0] is out["loss"] is out.loss and out["logits"] is out.logits


def test_save_load_round_trip_identical_logits_and_generations(memorised, tmp_path):
    cl, tok, ps = memorised
    cl.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    back = CoconutLM.from_pretrained(tmp_path / "m")
    assert (back.latent_id, back.start_id, back.end_id, back.pad_id, back.eos_id, back.config.n_thoughts) == \
           (cl.latent_id, cl.start_id, cl.end_id, cl.pad_id, cl.eos_id, 2)
    assert back.config.base_config["model_type"] == cl.base.config.model_type
    b = align_latents(ps, cl.latent_id, cl.pad_id)
    with torch.no_grad(): assert torch.equal(back(**b).logits, cl(**b).logits)
    assert back.generate(ps, 12).tokens == cl.generate(ps, 12).tokens
    assert [tok.decode(t) for t in back.generate(ps, 12).tokens][:3] == TARGETS[:3]
    kw = dict(max_new_tokens=12, temperature=2.0, top_p=0.9, seed=5)
    assert back.generate(ps, **kw).tokens == cl.generate(ps, **kw).tokens
    from transformers import AutoModelForCausalLM
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "m")) is CoconutLM


def test_one_hf_trainer_step_lowers_the_loss(tmp_path):
    from transformers import Trainer, TrainingArguments
    cl, tok, ps = _memorised("gpt2")
    tg = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in ["### 15", "### a cat", "### 7", "### plugh"]]
    rows = [{"ids": p + t, "labels": [-100] * len(p) + t} for p, t in zip(ps, tg)]
    collate = lambda feats: align_latents([f["ids"] for f in feats], cl.latent_id, cl.pad_id, [f["labels"] for f in feats])
    batch = collate(rows)
    with torch.no_grad(): before = cl(**batch).loss.item()
    args = TrainingArguments(output_dir=str(tmp_path / "t"), per_device_train_batch_size=4, max_steps=1, learning_rate=1e-2, report_to=[],
                             use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True, remove_unused_columns=False,
                             lr_scheduler_type="constant")
    Trainer(model=cl, args=args, train_dataset=rows, data_collator=collate).train()
    with torch.no_grad(): after = cl.eval()(**batch).loss.item()
    assert after < before - 0.05, (before, after)


def test_seeded_sampling_is_reproducible_and_independent_of_batching(memorised):
    cl, tok, ps = memorised
    kw = dict(max_new_tokens=10, temperature=3.0, top_p=0.95, seed=11)
    a = cl.generate(ps, **kw).tokens
    assert cl.generate(ps, **kw).tokens == a
    assert cl.generate(ps, batch_size=1, **kw).tokens == a
    assert cl.generate(ps, batch_size=3, **kw).tokens == a
    assert cl.generate(ps[::-1], **kw).tokens == a[::-1]
    assert cl.generate(ps, **{**kw, "seed": 12}).tokens != a
    assert a != cl.generate(ps, 10).tokens
    assert cl.generate(ps, 10, temperature=1.0, top_p=1e-6, seed=0).tokens == cl.generate(ps, 10).tokens


def test_sampled_first_token_follows_the_tempered_distribution():
    cl, tok, ps = _memorised("gpt2")
    p, T = ps[3], 4.0
    with torch.no_grad(): ref = (cl(torch.tensor([p])).logits[0, -1].float() / T).softmax(-1)
    hot = cl.generate([p] * 4000, max_new_tokens=1, temperature=T, seed=1).tokens
    freq = torch.bincount(torch.tensor([t[0] if t else cl.eos_id for t in hot]), minlength=ref.shape[0]).float() / 4000
    assert (freq - ref).abs().max() < 0.03


def test_text_prompts(memorised):
    cl, tok, ps = memorised
    g = cl.generate(["Is Tom a cat or a dog?", "2+3*4?"], tokenizer=tok, max_new_tokens=12)
    assert g.n_thoughts == [2, 2] and g.texts[0] == "### a dog"                     # config.n_thoughts = 2
    assert cl.generate("2+3*4?", tokenizer=tok, n_thoughts=3, max_new_tokens=12).texts == ["### 14"]
    with pytest.raises(LatentLMError, match="not text"): cl.generate(["2+3*4?"])
    with pytest.raises(LatentLMError, match="temperature"): cl.generate(ps, temperature=-0.5)
    with pytest.raises(LatentLMError, match="top_p"): cl.generate(ps, top_p=1.5)
    with pytest.raises(LatentLMError, match="n_thoughts"): cl.generate("2+3", tokenizer=tok, n_thoughts=-1)


def test_bad_or_missing_config_is_a_clear_error(memorised, tmp_path):
    cl, tok, ps = memorised
    cl.save_pretrained(tmp_path / "good")
    good = json.loads((tmp_path / "good" / "config.json").read_text())
    def variant(name, config=None, drop=None):
        d = tmp_path / name; shutil.copytree(tmp_path / "good", d)
        if config is not None: (d / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
        if drop: (d / drop).unlink()
        return d
    cases = [(tmp_path / "nowhere", "does not exist"), (variant("noconf", drop="config.json"), "no config.json"),
             (variant("notjson", "{oops"), "not valid JSON"), (variant("gpt2", {**good, "model_type": "gpt2"}), "not a Coconut one"),
             (variant("nobase", {**good, "base_config": None}), "no usable base_config"),
             (variant("badtype", {**good, "base_config": {**good["base_config"], "model_type": "no-such-model"}}), "cannot be rebuilt"),
             (variant("noweights", drop="model.safetensors"), "no .safetensors"),
             (variant("badid", {**good, "latent_id": "x"}), "latent_id")]
    for path, msg in cases:
        with pytest.raises(LatentLMError, match=msg): CoconutLM.from_pretrained(path)
    d = variant("trunc"); (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:300])
    with pytest.raises(LatentLMError): CoconutLM.from_pretrained(d)
