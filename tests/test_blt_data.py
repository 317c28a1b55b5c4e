"BLT bytes, entropy models, patching and data: property checks on random inputs and bad input."
import json, math, os, random, subprocess, sys
from pathlib import Path
import pytest
import torch
from latent_lm.core import LatentLMError
from latent_lm.blt.tokenizer import BOS_ID, EOS_ID, BOE_ID, OFFSET, VOCAB_SIZE, ByteTokenizer, document_ids, bits_per_byte
from latent_lm.blt.entropy import (EntropyModel, EntropyModelConfig, NgramEntropyModel, entropies, entropy_from_logits,
                                   stream_entropies)
from latent_lm.blt.patching import (Patcher, MODES, INCREMENTAL_MODES, calibrate_threshold, calibrate_patcher, average_patch_size,
                                    check_patcher_properties, random_patchers, random_stream, mask_to_lengths, lengths_to_mask)

tok = ByteTokenizer()


def test_tokenizer_roundtrip_random_bytes():
    rng = random.Random(0)
    for _ in range(200):
        b = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 50)))
        ids = tok.encode(b)
        assert ids[0] == BOS_ID and ids[-1] == EOS_ID and all(OFFSET <= i < VOCAB_SIZE for i in ids[1:-1])
        assert tok.decode(ids) == b
    assert tok.decode_text(tok.encode(b"\xc3")) == "\ufffd"           # truncated UTF-8 decodes with a replacement
    assert tok.encode("") == [BOS_ID, EOS_ID]


def test_document_ids_reset_at_bos_and_after_eos():
    x = torch.tensor([[5, 2, 1, 6, 7, 2, 8]])
    assert document_ids(x).tolist() == [[0, 0, 1, 1, 1, 1, 2]]


@pytest.mark.parametrize("trial", range(6))
def test_patcher_properties_random(trial):
    "lengths sum to T (T+1), first patch = BOS, max_patch_length, prefix property, stream == batch, for every mode."
    rng = random.Random(100 + trial)
    for _ in range(15):
        B, T = rng.randint(1, 5), rng.randint(1, 64)
        toks = random_stream(rng, B, T)
        ent = torch.rand(B, T, generator=torch.Generator().manual_seed(rng.randrange(10**6))) * 4
        if rng.random() < 0.3: ent = ent.round()
        for P in random_patchers(rng, 4.0):
            check_patcher_properties(P, toks, ent, keys=torch.arange(B) * 7 + trial)


def test_patch_lengths_format():
    x = torch.tensor([tok.encode("hello world")])
    for mode in ("static", "space", "byte"):
        P = Patcher(mode, patch_size=3) if mode == "static" else Patcher(mode)
        L = P.patch_lengths(x)
        assert L.sum().item() == x.shape[1] and L[0, 0].item() == 1
        assert torch.equal(lengths_to_mask(L), P.patch_start_mask(x))


def test_thresholds_that_give_one_patch_or_one_per_byte():
    x = torch.tensor([tok.encode("a text of some length")]); e = torch.rand(x.shape) * 3
    assert Patcher("entropy", threshold=1e9).patch_lengths(x, e).tolist() == [[1, x.shape[1] - 1]]
    assert Patcher("entropy", threshold=-1e9).patch_lengths(x, e).tolist() == [[1] * x.shape[1]]
    with pytest.raises(LatentLMError, match="No threshold gives"):
        calibrate_threshold("entropy", e, 1000.0, tokens=x)


def test_calibration_hits_target():
    g = torch.Generator().manual_seed(1)
    toks = torch.full((16, 256), OFFSET + 100); ent = torch.rand(16, 256, generator=g) * 2
    for mode in ("entropy", "monotonic", "random"):
        P = calibrate_patcher(mode, 6.0, toks, ent, keys=torch.arange(16))
        L = P.patch_lengths(toks, ent, keys=torch.arange(16))
        assert abs(L.sum().item() / (L > 0).sum().item() - 6.0) < 0.3


def test_topk_is_not_incremental_and_says_so():
    with pytest.raises(LatentLMError, match="not incremental"):
        Patcher("topk", k=2).stream(1)
    with pytest.raises(LatentLMError, match="needs the entropy model"):
        Patcher("entropy", threshold=1.0).patch_lengths(torch.tensor([[1, 5]]))


def test_entropy_model_batch_never_leaks():
    "Issue #123 of the official code: every sequence of a batch gets the logits it gets alone."
    torch.manual_seed(0)
    m = EntropyModel(EntropyModelConfig(dim=32, n_layers=2, n_heads=2, window=8)).eval()
    seqs = [torch.tensor(tok.encode(t)) for t in ["first sequence", "a much longer second sequence, beyond the window", "x"]]
    T = max(len(s) for s in seqs)
    batch = torch.stack([torch.nn.functional.pad(s, (0, T - len(s)), value=BOE_ID) for s in seqs])
    with torch.no_grad():
        lb = m(batch)
        for i, s in enumerate(seqs):
            assert torch.allclose(lb[i, :len(s)], m(s[None])[0], atol=1e-5)
        # ten copies of one prompt: identical entropies (the official bug gave ten different generations)
        h = entropies(m, seqs[1][None].repeat(10, 1))
        assert torch.allclose(h, h[:1].expand_as(h), atol=1e-6)


def test_entropy_step_equals_forward_long_input():
    "Longer than several windows (the blocked attention path) and with documents inside: step-by-step == one forward."
    torch.manual_seed(1)
    m = EntropyModel(EntropyModelConfig(dim=32, n_layers=2, n_heads=4, window=16)).eval()
    ids = tok.encode("one document here") + tok.encode("and another one, which is a good deal longer than the window of sixteen bytes")
    x = torch.tensor([ids, ids[::-1]])
    with torch.no_grad():
        full = m(x)
        inc, _ = m.prefill(x)
    assert x.shape[1] > 2 * 2 * 16
    assert torch.allclose(inc, full, atol=1e-5)
    assert torch.allclose(stream_entropies(m, x[0], chunk=13), entropies(m, x[0]), atol=1e-5)


def test_ngram_counts_and_step():
    docs = [tok.encode(t) for t in ["abcabc", "abd", "zz top"]]
    for n, maxc in ((1, 10), (2, 260), (3, 260 ** 2), (5, 1000)):
        ng = NgramEntropyModel(n=n, k=0.3, max_contexts=maxc).fit(docs)
        assert int(ng.counts.sum()) == sum(len(d) - 1 for d in docs)
        x = torch.tensor([docs[0] + docs[1]])
        full = ng(x); inc, _ = ng.prefill(x)
        assert torch.allclose(full, inc, atol=1e-6)
        assert torch.allclose(full.exp().sum(-1), torch.ones(x.shape), atol=1e-5)
    # a bigram: p(b | a) = (N(a,b) + k) / (N(a) + 260 k)
    ng = NgramEntropyModel(n=2, k=0.3).fit(docs)
    a, b = OFFSET + ord("a"), OFFSET + ord("b")
    lp = ng(torch.tensor([[a]]))[0, 0, b].item()
    assert math.isclose(lp, math.log((3 + 0.3) / (3 + 260 * 0.3)), rel_tol=1e-5)


def test_entropy_in_nats():
    assert math.isclose(entropy_from_logits(torch.zeros(260)).item(), math.log(260), rel_tol=1e-6)
    assert math.isclose(bits_per_byte(math.log(2) * 5, 5), 1.0)


def test_bad_entropy_input():
    m = EntropyModel(EntropyModelConfig(dim=16, n_layers=1, n_heads=2, window=4))
    with pytest.raises(LatentLMError, match="token ids must lie"):
        m(torch.tensor([[1, 999]]))
    with pytest.raises(LatentLMError, match=r"shape \[B, T\]"):
        m(torch.tensor([1, 2]))


def test_documents_split_and_sources(tmp_path):
    import datasets
    from latent_lm.blt.train import load_documents, split_documents, take_bytes, encode_documents, default_corpus
    docs = default_corpus()
    tr, ho = split_documents(docs, 0.1, seed=3)
    tr2, ho2 = split_documents(docs[::-1], 0.1, seed=3)
    assert {d["name"] for d in ho} == {d["name"] for d in ho2} and not ({d["name"] for d in tr} & {d["name"] for d in ho})
    assert sum(len(encode_documents([d])) - 2 for d in take_bytes(tr, 50_000)) == 50_000
    (tmp_path / "a.txt").write_bytes(b"\xff\xfe not utf-8\n" * 3000)
    docs = load_documents(tmp_path / "a.txt")
    tr, ho = split_documents(docs)
    assert len(tr) >= 1 and len(ho) >= 1
    assert b"".join(d["text"] for d in sorted(tr + ho, key=lambda d: int(d["name"].split("#")[1]))) == (tmp_path / "a.txt").read_bytes()
    ds = datasets.Dataset.from_dict({"content": ["x" * 100, "y" * 100, "z" * 100]})
    assert [d["text"][0] for d in load_documents(ds, text_field="content")] == ["x", "y", "z"]
    with pytest.raises(LatentLMError, match="no column"):
        load_documents(ds)
    with pytest.raises(LatentLMError, match="empty"):
        load_documents([""])


def test_data_module_batches(tmp_path):
    from latent_lm.blt.train import BLTDataModule
    for patching in ("entropy", "static", "space", "random", "monotonic"):
        dm = BLTDataModule(max_bytes=40_000, max_heldout_bytes=8_000, seq_len=64, batch_size=4, patching=patching,
                           target_patch_size=5.0, entropy_model="ngram", cache_dir=str(tmp_path))
        dm.prepare_data(); dm.setup("fit")
        b = next(iter(dm.train_dataloader()))
        assert b["tokens"].shape == (4, 64) and torch.equal(b["targets"][:, :-1], b["tokens"][:, 1:])
        assert (b["patch_lengths"].sum(1) == 65).all() and (b["patch_lengths"][:, 0] == 1).all()
        if patching != "space": assert abs(dm.stats["bytes_per_patch_train"] - 5.0) < 0.6, (patching, dm.stats)


def test_patch_command_odd_inputs(tmp_path, capsys):
    os.environ["LATENT_LM_CACHE"] = str(tmp_path / "cache")
    from latent_lm.blt.app import patch
    assert patch("", mode="space", color="never") == 0
    assert "empty" in capsys.readouterr().out
    (tmp_path / "bin").write_bytes(b"\x80\x81 ok \xff")
    assert patch(file=str(tmp_path / "bin"), threshold=2.0, out=str(tmp_path / "o"), color="never") == 0
    j = json.loads((tmp_path / "o" / "patches.json").read_text())
    assert sum(j["lengths"]) == 9 and any("not valid UTF-8" in n for n in j["notes"])
    assert patch("abc" * 100, mode="byte", max_bytes=10, color="never") == 0
    assert "patched the first 10" in capsys.readouterr().out
    with pytest.raises(LatentLMError, match="Give a text"):
        patch()
    with pytest.raises(LatentLMError, match="file not found"):
        patch(file=str(tmp_path / "missing"))
