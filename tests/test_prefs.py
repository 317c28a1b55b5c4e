"""Preference and SFT training (`latent_lm.prefs`): losses against hand-computed values, DPO and SFT learning on a tiny
model, cached reference log-probs, TRL-format loading with clear errors, and tokenisation boundaries."""
import copy, json, logging, math, warnings
from pathlib import Path
import pytest
import torch

from latent_lm.core import LatentLMError, write_jsonl, read_jsonl
from latent_lm.lm import tiny_lm, sequence_logprobs
from latent_lm.prefs import (preference_loss, load_preferences, load_sft, tokenize_preferences, tokenize_example,
                             collate_preferences, precompute_ref_logps, model_fingerprint, PreferenceModule, PreferenceDataModule,
                             SFTModule, SFTDataModule, toy_preference_pairs)

for _n in ("lightning.pytorch", "lightning.fabric"): logging.getLogger(_n).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
torch.set_num_threads(1)

def logsig(z): return -math.log(1 + math.exp(-z))

# Three pairs, written out by hand. Columns: policy chosen, policy rejected, ref chosen, ref rejected, |y+|, |y-|.
PC, PR, RC, RR = [-10.0, -4.0, -7.0], [-12.0, -3.0, -7.0], [-11.0, -4.0, -6.0], [-11.0, -2.0, -8.0]
LC, LR = [5, 2, 7], [4, 1, 7]
# chosen log-ratios: 1, 0, -1; rejected log-ratios: -1, -1, 1; h = 2, 1, -2
H = [2.0, 1.0, -2.0]

def T(x): return torch.tensor(x, dtype=torch.float32)

def test_dpo_sigmoid_by_hand():
    beta = 0.2
    loss, m = preference_loss(T(PC), T(PR), T(RC), T(RR), beta=beta)
    want = -(logsig(0.4) + logsig(0.2) + logsig(-0.4)) / 3
    assert abs(loss.item() - want) < 1e-6
    assert abs(m["rewards/chosen"].item() - 0.2 * (1 + 0 - 1) / 3) < 1e-6
    assert abs(m["rewards/rejected"].item() - 0.2 * (-1 - 1 + 1) / 3) < 1e-6
    assert abs(m["rewards/margins"].item() - 0.2 * (2 + 1 - 2) / 3) < 1e-6
    assert abs(m["rewards/accuracies"].item() - 2 / 3) < 1e-6
    assert abs(m["logps/chosen"].item() - (-21 / 3)) < 1e-6 and abs(m["logps/rejected"].item() - (-22 / 3)) < 1e-6

def test_dpo_label_smoothing_by_hand():
    beta, eps = 0.2, 0.25
    loss, _ = preference_loss(T(PC), T(PR), T(RC), T(RR), beta=beta, label_smoothing=eps)
    want = sum(-(1 - eps) * logsig(beta * h) - eps * logsig(-beta * h) for h in H) / 3
    assert abs(loss.item() - want) < 1e-6

def test_ipo_by_hand():
    beta = 0.25                                   # 1 / (2 beta) = 2
    loss, _ = preference_loss(T(PC), T(PR), T(RC), T(RR), beta=beta, loss_type="ipo", chosen_lengths=LC, rejected_lengths=LR)
    h_tok = [1 / 5 - (-1) / 4, 0 / 2 - (-1) / 1, -1 / 7 - 1 / 7]
    want = sum((h - 2) ** 2 for h in h_tok) / 3
    assert abs(loss.item() - want) < 1e-6

def test_hinge_by_hand():
    loss, _ = preference_loss(T(PC), T(PR), T(RC), T(RR), beta=0.75, loss_type="hinge")
    want = (max(0, 1 - 1.5) + max(0, 1 - 0.75) + max(0, 1 + 1.5)) / 3
    assert abs(loss.item() - want) < 1e-6

def test_weights_and_irpo_nll_by_hand():
    beta, alpha, w = 0.5, 2.0, [1.0, 0.0, 0.5]
    loss, m = preference_loss(T(PC), T(PR), T(RC), T(RR), beta=beta, weights=w, alpha=alpha, chosen_lengths=LC)
    per = [-logsig(beta * h) + alpha * (-pc / lc) for h, pc, lc in zip(H, PC, LC)]
    want = sum(wi * p for wi, p in zip(w, per)) / 3
    assert abs(loss.item() - want) < 1e-6
    assert abs(m["nll"].item() - (10 / 5 + 4 / 2 + 7 / 7) / 3) < 1e-6
    # a zero weight removes a pair's gradient entirely
    x = T(PC).requires_grad_()
    preference_loss(x, T(PR), T(RC), T(RR), beta=beta, weights=w, alpha=alpha, chosen_lengths=LC)[0].backward()
    assert x.grad[1] == 0 and x.grad[0] < 0

def test_loss_input_errors():
    with pytest.raises(LatentLMError, match="chosen_lengths"): preference_loss(T(PC), T(PR), T(RC), T(RR), alpha=1.0)
    with pytest.raises(LatentLMError, match="one length"): preference_loss(T(PC), T(PR[:2]), T(RC), T(RR))
    with pytest.raises(LatentLMError, match="label_smoothing applies"): preference_loss(T(PC), T(PR), T(RC), T(RR), loss_type="hinge", label_smoothing=0.1)

def test_preference_file_missing_column(tmp_path):
    f = tmp_path / "pairs.jsonl"
    write_jsonl(f, [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b", "answer": "c"}])
    with pytest.raises(LatentLMError) as e: load_preferences(f)
    msg = str(e.value)
    assert "missing column 'rejected'" in msg and str(f) in msg and "['answer', 'chosen', 'prompt']" in msg and "record 1" in msg
    # a renamed column is found with rejected_key, and comes back under TRL's name
    assert load_preferences([{"prompt": "a", "chosen": "b", "answer": "c"}], rejected_key="answer")[0]["rejected"] == "c"
    with pytest.raises(LatentLMError, match="given as rejected_key='bad'"): load_preferences([{"prompt": "a", "chosen": "b"}], rejected_key="bad")
    import datasets
    with pytest.raises(LatentLMError, match="missing column 'chosen'"): load_preferences(datasets.Dataset.from_list([{"prompt": "a", "rejected": "b"}]))
    with pytest.raises(LatentLMError, match="not found"): load_preferences(tmp_path / "nope.jsonl")
    with pytest.raises(LatentLMError, match="missing column 'completion'"): load_sft([{"prompt": "a"}])

def test_tokenisation_boundaries():
    _, tok = tiny_lm()
    recs = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
             "chosen": [{"role": "assistant", "content": "Hello"}], "rejected": [{"role": "assistant", "content": "Go away"}]}]
    r = tokenize_preferences(load_preferences(recs), tok)[0]
    text = tok.apply_chat_template(recs[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert r["prompt_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(r["chosen_ids"]) == "Hello<|im_end|>" and r["rejected_ids"][-1] == tok.eos_token_id
    # prompt ids are a prefix of each training sequence, and the batch masks exactly the response
    b = collate_preferences([r], tok.pad_token_id)
    n = len(r["prompt_ids"])
    assert b["input_ids"][0, :n].tolist() == r["prompt_ids"] and b["completion_mask"][0, :n].sum() == 0
    assert b["completion_mask"][0].sum() == len(r["chosen_ids"]) and b["completion_mask"][1].sum() == len(r["rejected_ids"])
    with pytest.raises(LatentLMError, match="max_prompt_length=8"): tokenize_example(tok, "a long prompt", ["x"], max_prompt_length=8)
    with pytest.raises(LatentLMError, match="max_length=20"): tokenize_example(tok, "a long prompt", ["a long answer"], chat=False, max_length=20)
    p, (c,) = tokenize_example(tok, "a long prompt", ["a long answer"], chat=False, max_length=20, max_prompt_length=10, truncation="truncate")
    assert len(p) == 10 and len(p) + len(c) == 20 and tok.decode(p) == "ong prompt"

def test_cached_ref_logps_equal_on_the_fly_and_step0_is_log2(tmp_path):
    model, tok = tiny_lm(seed=2)
    pairs = toy_preference_pairs(12, seed=1)
    cache = tmp_path / "ref.jsonl"
    cached = precompute_ref_logps(model, pairs, tok, batch_size=5, cache=cache)
    assert read_jsonl(cache) == cached and all(r["ref_model"] == model_fingerprint(model) for r in cached)
    rows = tokenize_preferences(pairs, tok)
    batch = collate_preferences(rows, tok.pad_token_id)                       # no ref columns: computed on the fly
    fly_c, fly_r = PreferenceModule(model, ref_model=copy.deepcopy(model), save_hf=False).reference_logps(batch)
    assert torch.allclose(fly_c, torch.tensor([r["ref_chosen_logps"] for r in cached]), atol=1e-4)
    assert torch.allclose(fly_r, torch.tensor([r["ref_rejected_logps"] for r in cached]), atol=1e-4)
    batch = collate_preferences([{**r, **c} for r, c in zip(rows, cached)], tok.pad_token_id)
    loss, m = PreferenceModule(model, save_hf=False).compute_loss(batch)
    assert abs(loss.item() - math.log(2)) < 1e-4 and m["rewards/accuracies"].item() == 0.0
    # a changed model invalidates the cache: the values are recomputed, not reused
    with torch.no_grad(): next(model.parameters()).add_(0.01)
    again = precompute_ref_logps(model, pairs, tok, cache=cache)
    assert again[0]["ref_model"] != cached[0]["ref_model"] and again[0]["ref_chosen_logps"] != cached[0]["ref_chosen_logps"]

def _trainer(tmp, steps, **kw):
    from latent_lm.train import make_trainer                       # the one quiet Trainer: metrics.csv in <tmp>/run
    return make_trainer(accelerator="cpu", devices=1, max_steps=steps, default_root_dir=Path(tmp) / "run", enable_checkpointing=False, **kw)

def _metrics(trainer):
    import pandas as pd
    return pd.read_csv(Path(trainer.log_dir) / "metrics.csv").groupby("step").mean()

def test_dpo_raises_reward_accuracy(tmp_path):
    import lightning as L
    L.seed_everything(0)
    model, tok = tiny_lm(seed=0)
    dm = PreferenceDataModule(toy_preference_pairs(32), tok, val_data=toy_preference_pairs(8, seed=9), batch_size=8, seed=0,
                              ref_cache=str(tmp_path / "pairs.ref.jsonl"))
    dm.setup("fit")
    full = collate_preferences(dm.train_rows, tok.pad_token_id)
    with torch.no_grad(): lp = sequence_logprobs(model, full["input_ids"], full["attention_mask"], full["completion_mask"])
    assert (lp[:32] > lp[32:]).float().mean().item() == 0.5             # untrained: prefers the chosen answer in half the pairs
    pm = PreferenceModule(model, beta=0.1, lr=1e-3, warmup_steps=2)
    tr = _trainer(tmp_path, 40, val_check_interval=40, check_val_every_n_epoch=None); tr.fit(pm, dm)
    log = _metrics(tr)
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected",
            "val/loss", "val/rewards/accuracies"} <= set(log.columns)
    assert len(read_jsonl(tmp_path / "pairs.ref.jsonl")) == 32 and len(read_jsonl(tmp_path / "pairs.ref.val.jsonl")) == 8
    assert abs(log["train/loss"].iloc[0] - math.log(2)) < 1e-4
    full = collate_preferences(dm.train_rows, tok.pad_token_id)        # now with the reference log-probs added in setup
    with torch.no_grad(): loss, m = pm.eval().compute_loss(full)
    assert m["rewards/accuracies"].item() > 0.9, m
    assert loss.item() < 0.6 and m["rewards/margins"].item() > 0
    # the trained model was saved in HF format into the run folder
    from latent_lm.lm import load_lm
    m2, _ = load_lm(Path(tr.log_dir) / "hf_model")
    x = full["input_ids"][:2]
    with torch.no_grad(): assert torch.allclose(m2(x).logits, pm.model(x).logits, atol=1e-5)

def test_sft_loss_decreases(tmp_path):
    import lightning as L
    L.seed_everything(0)
    model, tok = tiny_lm(seed=0)
    recs = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in toy_preference_pairs(32)]
    sm = SFTModule(model, lr=1e-3, save_hf=False)
    tr = _trainer(tmp_path, 30); tr.fit(sm, SFTDataModule(recs, tok, batch_size=8))
    loss = _metrics(tr)["train/loss"]
    assert loss.iloc[-3:].mean() < 0.5 * loss.iloc[:3].mean(), loss.tolist()
    # the loss is the mean NLL of the response tokens only, written out from the logits
    batch = next(iter(SFTDataModule(recs[:4], tok, batch_size=4, shuffle=False).train_dataloader()))
    sm.eval()
    with torch.no_grad():
        got, _ = sm.compute_loss(batch)
        logp = torch.log_softmax(sm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float(), -1)
    nll, n = 0.0, 0
    for i in range(4):
        for t in range(1, batch["input_ids"].shape[1]):
            if batch["completion_mask"][i, t]:
                nll -= logp[i, t - 1, batch["input_ids"][i, t]].item(); n += 1
    assert n == sum(len(tok(r["completion"])["input_ids"]) + 1 for r in recs[:4])      # response bytes + EOS, no prompt token
    assert abs(got.item() - nll / n) < 1e-5


def test_fit_stops_on_an_example_longer_than_the_context(tmp_path):
    "Issue 9: a prompt longer than the model's context used to train silently; now fit stops before any step, naming the record."
    import pytest
    from latent_lm.core import LatentLMError
    from latent_lm.lm import tiny_lm
    from latent_lm.prefs import PreferenceDataModule, PreferenceModule
    from latent_lm.train import make_trainer
    model, tok = tiny_lm(max_len=64)
    pairs = [{"prompt": "short", "chosen": "a", "rejected": "b"}, {"prompt": "long " * 100, "chosen": "a", "rejected": "b"}]
    dm = PreferenceDataModule(pairs, tok, batch_size=2, chat=False)
    tr = make_trainer(max_steps=1, default_root_dir=str(tmp_path), enable_checkpointing=False)
    with pytest.raises(LatentLMError, match="training record 1: prompt \\+ response is .* longer than the model's context of 64"):
        tr.fit(PreferenceModule(model, save_hf=False), dm)
    assert not (tmp_path / "hf_model").exists()
