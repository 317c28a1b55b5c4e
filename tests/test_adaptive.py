"""Adaptive decoding / LPO: the head's checks, greedy equivalence, the LPO losses against hand-computed values, gradients
reaching only the head, save/load, the suite's rewards, the CLI (bad input, a shrunk tiny config, generate killed and resumed)."""
import json, math, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from latent_lm.core import LatentLMError, read_jsonl
from latent_lm.generate import HFGenerator
from latent_lm.judge import CallableJudge
from latent_lm.lm import tiny_lm
from latent_lm.adaptive.head import AdaptiveDecoder, TemperatureHead, check_temperatures
from latent_lm.adaptive.lpo import (lpo_loss, lpo_joint_loss, lpo_nll_loss, lpo_marginal_loss, mixture_logprob, temperature_token_logprobs,
                                    sample_scored, lpo_pairs, LPODataModule, LPOModule, fit_lpo, best_worst)
from latent_lm.adaptive.suite import suite_reward, SuiteConfig, suite_prompts, lm_corpus

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "LATENT_LM_QUIET": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def lm_tok():
    return tiny_lm(d_model=32, n_layers=1, seed=0)


# ---------------------------------------------------------------- the head

def test_malformed_temperature_sets_are_clear_errors(lm_tok):
    lm, tok = lm_tok
    for bad, needle in [([0.5], "at least two"), ([0.0, -0.1], ">= 0"), ([0.0, float("inf")], "finite"), ([0.0, 1.0, 1.0], "repeated"),
                        ([1.0, 0.0], "increasing"), ("0 1", "list"), ([0, True], ">= 0")]:
        with pytest.raises(LatentLMError, match=needle): AdaptiveDecoder.from_model(lm, tok, temperatures=bad)
    assert check_temperatures([0, 1]) == (0.0, 1.0)


def test_head_model_size_mismatch(lm_tok, tmp_path):
    lm, tok = lm_tok
    with pytest.raises(LatentLMError, match="size mismatch"): AdaptiveDecoder(lm, TemperatureHead(64, 6), tokenizer=tok)
    AdaptiveDecoder.from_model(lm, tok).save_pretrained(tmp_path / "h")
    other, _ = tiny_lm(d_model=48, n_layers=1)
    with pytest.raises(LatentLMError, match="size mismatch"): AdaptiveDecoder.from_pretrained(tmp_path / "h", other, tok)


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_head_that_always_picks_zero_is_greedy(lm_tok, level):
    lm, tok = lm_tok
    ad = AdaptiveDecoder(lm, TemperatureHead(32, 3), (0.0, 0.5, 1.0), level, tok)
    with torch.no_grad(): ad.head.net[-1].bias.copy_(torch.tensor([40.0, 0.0, 0.0]))
    prompts = ["hello there", "x", "a somewhat longer prompt"]
    plain = HFGenerator(lm, tok).generate(prompts, n=1, temperature=0, max_new_tokens=24, chat=False)
    mine = ad.generate(prompts, n=3, max_new_tokens=24, seed=5, batch_size=4)
    for p, m in zip(plain, mine):
        for c in m:
            assert c.token_ids == p[0].token_ids and set(c.temperatures) == {0.0}


def test_sequence_level_keeps_one_temperature_and_token_level_varies(lm_tok):
    lm, tok = lm_tok
    head = TemperatureHead(32, 3)
    seq = AdaptiveDecoder(lm, head, (0.0, 0.5, 1.0), "sequence", tok)
    for row in seq.generate(["ab", "cde"], n=6, max_new_tokens=16, seed=1, batch_size=5):
        for c in row: assert len(set(c.temperatures)) == 1
    tokl = AdaptiveDecoder(lm, head, (0.0, 0.5, 1.0), "token", tok)
    cs = [c for row in tokl.generate(["ab", "cde"], n=6, max_new_tokens=16, seed=1) for c in row]
    assert any(len(set(c.temperatures)) > 1 for c in cs)
    assert all(len(c.temperatures) == c.num_tokens == len(tokl.temperature_ids(c)) for c in cs)


def test_save_load_roundtrip(lm_tok, tmp_path):
    lm, tok = lm_tok
    ad = AdaptiveDecoder.from_model(lm, tok, temperatures=[0, 0.7, 1.3], level="sequence", width=16, choice="argmax")
    with torch.no_grad(): ad.head.net[-1].bias.copy_(torch.tensor([0.1, 2.0, -1.0]))
    ad.save_pretrained(tmp_path / "h")
    back = AdaptiveDecoder.from_pretrained(tmp_path / "h", lm, tok)
    h = torch.randn(5, 32)
    assert torch.allclose(back.temperature_logprobs(h), ad.temperature_logprobs(h))
    assert (back.level, back.temperatures, back.choice, back.head.width) == ("sequence", (0.0, 0.7, 1.3), "argmax", 16)
    a = ad.generate(["hi"], n=2, max_new_tokens=8, seed=3); b = back.generate(["hi"], n=2, max_new_tokens=8, seed=3)
    assert [c.token_ids for c in a[0]] == [c.token_ids for c in b[0]]
    (tmp_path / "h" / "adaptive_head.safetensors").write_bytes(b"\x00" * 12)
    with pytest.raises(LatentLMError, match="safetensors"): AdaptiveDecoder.from_pretrained(tmp_path / "h", lm, tok)


# ---------------------------------------------------------------- LPO losses, by hand

def _nls(x): return math.log1p(math.exp(-x))      # -log sigmoid(x)

def test_lpo_losses_hand_computed():
    c, r = torch.tensor([-0.5, -3.0]), torch.tensor([-2.0, -1.0])
    assert torch.allclose(lpo_loss(c, r, 0.1), torch.tensor([_nls(0.15), _nls(-0.2)]))
    assert torch.allclose(lpo_nll_loss(c), torch.tensor([0.5, 3.0]))
    pc, pr, rc, rr = torch.tensor([-4.0, -4.0]), torch.tensor([-5.0, -5.0]), torch.tensor([-4.5, -3.0]), torch.tensor([-5.0, -6.0])
    want = [_nls(1.0 * ((-4 + 4.5) - (-5 + 5)) + 1.0 * 1.5), _nls(((-4 + 3) - (-5 + 6)) + (-2.0))]
    assert torch.allclose(lpo_joint_loss(c, r, pc, pr, rc, rr, 1.0), torch.tensor(want))
    assert torch.allclose(lpo_marginal_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.5]), 0.5),
                          torch.tensor([_nls(0.5 * (1.0 - (-0.5)))]))


def test_marginal_mixture_hand_computed():
    logits = torch.tensor([[[1.0, 3.0, 0.0], [2.0, 2.5, 0.5]]])          # [B=1, T=2, V=3]
    y = torch.tensor([[1, 0]])
    tl = temperature_token_logprobs(logits, y, (0.0, 0.5, 1.0))
    sm = lambda z, i: math.exp(z[i]) / sum(math.exp(v) for v in z)
    p = [[1.0, sm([2.0, 6.0, 0.0], 1), sm([1.0, 3.0, 0.0], 1)], [0.0, sm([4.0, 5.0, 1.0], 0), sm([2.0, 2.5, 0.5], 0)]]
    for t in range(2):
        for k in range(3):
            want = math.log(p[t][k]) if p[t][k] > 0 else -math.inf
            assert tl[0, t, k].item() == pytest.approx(want, rel=1e-5) or (want == -math.inf and tl[0, t, k].item() == -math.inf)
    w = [0.2, 0.3, 0.5]
    tok_mix = sum(math.log(sum(w[k] * p[t][k] for k in range(3))) for t in range(2))
    assert mixture_logprob(tl, torch.tensor(w).log().expand(1, 2, 3), torch.ones(1, 2)).item() == pytest.approx(tok_mix, rel=1e-5)
    seq_mix = math.log(sum(w[k] * p[0][k] * p[1][k] for k in range(3)))
    assert mixture_logprob(tl, torch.tensor([w]).log(), torch.ones(1, 2), "sequence").item() == pytest.approx(seq_mix, rel=1e-5)


def test_best_worst():
    assert best_worst([0.2, 0.9, 0.1, 0.9]) == (1, 2)
    assert best_worst([0.5, 0.5]) is None and best_worst([None, 1.0]) is None


# ---------------------------------------------------------------- LPO training: only the head moves

def _toy_pairs(ad, tok, lm):
    prompts = [f"G{i}" for i in range(8)] + [f"H{i}" for i in range(8)]
    greedy = {p: o[0].text for p, o in zip(prompts, HFGenerator(lm, tok).generate(prompts, temperature=0, max_new_tokens=6, chat=False))}
    def reward(p, r):
        ids = tok(r, add_special_tokens=False)["input_ids"]
        return float(r == greedy[p]) if p[0] == "G" else len(set(ids)) / max(len(ids), 1)
    recs = sample_scored(ad, [{"key": p, "prompt": p} for p in prompts], CallableJudge(reward), n=4, max_new_tokens=6, seed=0)
    return lpo_pairs(recs)


@pytest.mark.parametrize("variant,level", [("temperature", "token"), ("marginal", "token"), ("marginal", "sequence"), ("nll", "sequence"),
                                           ("joint", "token")])
def test_gradients_reach_only_the_head(lm_tok, variant, level):
    lm, tok = lm_tok
    ad = AdaptiveDecoder.from_model(lm, tok, temperatures=[0.0, 1.0], level=level, width=16)
    pairs = _toy_pairs(ad, tok, lm)
    assert pairs and all(len(p["chosen_tau"]) == len(p["chosen_ids"]) for p in pairs)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    dm = LPODataModule(ad, pairs, batch_size=4, logprobs=variant == "marginal"); dm.setup()
    mod = LPOModule(ad, variant=variant)
    assert {n for n, _ in mod.named_parameters()} == {f"head.{n}" for n, _ in ad.head.named_parameters()}
    loss, _ = mod.lpo_step(next(iter(dm.train_dataloader())))
    loss.backward()
    assert all(p.grad is None for p in lm.parameters())
    assert ad.head.net[-1].weight.grad.abs().sum() > 0
    ad.head.zero_grad()
    head0 = {k: v.clone() for k, v in ad.head.state_dict().items()}
    fit_lpo(ad, pairs, variant, lr=1e-2, epochs=2, batch_size=4)
    assert all(torch.equal(v, before[k]) for k, v in lm.state_dict().items())
    assert any(not torch.equal(v, head0[k]) for k, v in ad.head.state_dict().items())


def test_lpo_learns_per_prompt_temperature(lm_tok):
    lm, tok = lm_tok
    ad = AdaptiveDecoder.from_model(lm, tok, temperatures=[0.0, 1.0], level="sequence", width=32)
    fit_lpo(ad, _toy_pairs(ad, tok, lm), lr=3e-2, epochs=30, batch_size=8)
    from latent_lm.adaptive.lpo import response_features, prompt_ids
    def p_hot(ps):
        fs = response_features(ad, [prompt_ids(ad, p) for p in ps], [[0]] * len(ps))
        return sum(ad.temperature_logprobs(f["h"][0]).exp()[1].item() for f in fs) / len(ps)
    assert p_hot([f"G{i}" for i in range(8)]) < 0.3 and p_hot([f"H{i}" for i in range(8)]) > 0.7


def test_sampling_resumes_after_a_crash(lm_tok, tmp_path):
    lm, tok = lm_tok
    ad = AdaptiveDecoder.from_model(lm, tok, temperatures=[0.0, 0.5, 1.0])
    items = [{"key": f"k{i}", "prompt": f"p{i} "} for i in range(10)]
    calls = []
    def reward(p, r): calls.append(p); return float(len(r))
    full = sample_scored(ad, items, CallableJudge(reward), n=3, max_new_tokens=6, seed=4, out=tmp_path / "a.jsonl", chunk_size=4)
    calls.clear()
    def crashing(p, r):
        if len(calls) >= 12: raise RuntimeError("killed")
        calls.append(p); return float(len(r))
    with pytest.raises(RuntimeError): sample_scored(ad, items, CallableJudge(crashing), n=3, max_new_tokens=6, seed=4, out=tmp_path / "b.jsonl", chunk_size=4)
    assert len(read_jsonl(tmp_path / "b.jsonl")) == 4                     # the first chunk was committed
    calls.clear()
    again = sample_scored(ad, items, CallableJudge(reward), n=3, max_new_tokens=6, seed=4, out=tmp_path / "b.jsonl", chunk_size=4)
    assert len(calls) == 6 * 3                                            # finished prompts were not redone
    assert again == full


# ---------------------------------------------------------------- the suite

def test_suite_rewards_and_prompts():
    assert suite_reward("F 2+3=", " 5") == 1.0 and suite_reward("F 2+3=", " 6") == 0.0
    assert suite_reward("L 1 color:", " red red blue gold") == 0.75 and suite_reward("L 1 color:", " red fig") == 0.25
    cfg = SuiteConfig(n_train=10, n_dev=4, n_test=4)
    ps = suite_prompts(cfg, "train")
    assert [p["task"] for p in ps].count("fact") == 5 and all(suite_reward(p["prompt"], "") is not None for p in ps)
    recs = lm_corpus(cfg, 200)
    assert all(suite_reward(r["prompt"], r["completion"]) is not None for r in recs)


# ---------------------------------------------------------------- the CLI

def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "latent_lm.cli", "adaptive", *args], capture_output=True, text=True, env=ENV, cwd=ROOT,
                          timeout=timeout)

SMALL = ["--model.steps", "30", "--model.n_records", "400", "--task.n_train", "16", "--task.n_dev", "8", "--task.n_test", "8",
         "--lpo.n", "3", "--lpo.epochs", "2", "--lpo.max_new_tokens", "12", "--eval.n", "2", "--eval.n_boot", "50"]

@pytest.mark.parametrize("extra,needle", [(["--lpo.temperatures", "[0.5, 0.1]"], "lpo.temperatures"), (["--lpo.variant", "kl"], "lpo.variant"),
                                          (["--lpo.n", "1"], "lpo.n"), (["--task.fact_noise", "0.7"], "task.fact_noise"),
                                          (["--model.d_model", "30"], "model.d_model")])
def test_fit_bad_input_exit_2_names_the_field_writes_nothing(tmp_path, extra, needle):
    from latent_lm.cli import main
    rc = main(["adaptive", "fit", "--config", str(ROOT / "configs/adaptive/tiny.yaml"), "--run_dir", str(tmp_path / "run"), *extra])
    assert rc == 2 and not (tmp_path / "run").exists()


def test_fit_bad_input_message(tmp_path, capsys):
    from latent_lm.cli import main
    assert main(["adaptive", "fit", "--config", str(ROOT / "configs/adaptive/tiny.yaml"), "--run_dir", str(tmp_path / "r"), "--lpo.level", "word"]) == 2
    assert "lpo.level" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_small_config_runs_and_reruns(tmp_path):
    run = tmp_path / "run"
    p = _cli("fit", "--config", str(ROOT / "configs/adaptive/tiny.yaml"), "--run_dir", str(run), *SMALL)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "head - best fixed on dev" in p.stdout
    for f in ("lm/config.json", "samples.jsonl", "pairs.jsonl", "head/adaptive_config.json", "eval.json", "figures/tokens.png"):
        assert (run / f).exists(), f
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["fixed"]) == {str(t) for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)} and 0 <= ev["head"] <= 1
    n_samples = len(read_jsonl(run / "samples.jsonl"))
    p = _cli("fit", "--config", str(ROOT / "configs/adaptive/tiny.yaml"), "--run_dir", str(run), *SMALL)    # rerun: nothing redone
    assert p.returncode == 0 and len(read_jsonl(run / "samples.jsonl")) == n_samples
    p = _cli("fit", "--config", str(ROOT / "configs/adaptive/tiny.yaml"), "--run_dir", str(run), *SMALL[:-2], "--eval.n_boot", "60")
    assert p.returncode == 2 and "overwrite" in p.stderr


def test_generate_killed_and_resumed(lm_tok, tmp_path, capsys):
    from latent_lm.train import save_pretrained_atomic
    lm, tok = lm_tok
    save_pretrained_atomic(tmp_path / "lm", lm, tok)
    AdaptiveDecoder.from_model(lm, tok, temperatures=[0.0, 0.5, 1.0], seed=1).save_pretrained(tmp_path / "head")
    prompts = tmp_path / "p.txt"; prompts.write_text("\n".join(f"L {i} fruit:" if i % 2 else f"F {i % 6}+1=" for i in range(96)) + "\n")
    args = ["generate", "--head", str(tmp_path / "head"), "--model", str(tmp_path / "lm"), "--prompts", str(prompts), "--n", "2",
            "--max_new_tokens", "16"]
    from latent_lm.cli import main
    assert main(["adaptive", *args, "--out", str(tmp_path / "full.jsonl")]) == 0
    full = read_jsonl(tmp_path / "full.jsonl")
    assert len(full) == 96 and all(len(c["temperatures"]) == len(c["tau_ids"]) for r in full for c in r["completions"])
    out = tmp_path / "killed.jsonl"
    from test_rounds import forked_cli                         # a real process, forked from this warm one: no interpreter start-up
    proc = forked_cli(["adaptive", *args, "--out", out], tmp_path / "logs")()
    t0 = time.time()
    while time.time() - t0 < 300 and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 16: break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed: proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    part = len(read_jsonl(out)) if out.exists() else 0
    assert main(["adaptive", *args, "--out", str(out)]) == 0
    assert sorted(map(json.dumps, read_jsonl(out))) == sorted(map(json.dumps, full))       # same records as the uninterrupted run
    assert not killed or part < 96
    assert main(["adaptive", *args, "--out", str(out), "--n", "3"]) == 2                   # other settings: an error, not a mix
    assert "overwrite" in capsys.readouterr().err
    assert main(["adaptive", *args[:2], str(tmp_path / "nothing"), *args[3:], "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no trained head" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
