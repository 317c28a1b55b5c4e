"Backtracking: loss masks on a hand-made example, the SFT/DPO builders, [RESET] save/load, the CLI (bad input, a missing [RESET], resume after a kill)."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from latent_lm.cli import main
from latent_lm.core import LatentLMError
from latent_lm.lm import tiny_lm, load_lm
from latent_lm.prefs import model_fingerprint
from latent_lm.backtrack.data import (RESET, add_reset_token, reset_token_id, backtrack_sft_records, backtrack_dpo_pairs, loss_tokens,
                                      toy_split, is_unsafe, token_prefix)
from latent_lm.backtrack.eval import RuleSafetyJudge, visible_text, prefill_attack
from latent_lm.generate import HFGenerator

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--world.n_people", "4", "--model.d_model", "32", "--model.n_heads", "2", "--model.vocab_size", "330", "--model.pretrain_epochs", "4",
        "--model.batch_size", "16", "--sft.epochs", "2", "--sft.batch_size", "16", "--dpo.epochs", "1", "--dpo.batch_size", "16"]


@pytest.fixture(scope="module")
def tok():
    m, t = tiny_lm(seed=0)
    add_reset_token(m, t)
    return t


def test_loss_mask_hand_made(tok):
    rec = {"prompt": "Q: pin?\nA: Sure! 12", "completion": "[RESET]No."}
    lt = loss_tokens(rec, tok)
    assert "".join(t for t, _ in lt) == "Q: pin?\nA: Sure! 12[RESET]No.<|im_end|>"
    assert [t for t, l in lt if l] == ["[RESET]", "N", "o", ".", "<|im_end|>"]       # exactly [RESET] + y+ + EOS
    assert [l for t, l in lt][:len("Q: pin?\nA: Sure! 12")] == [False] * len("Q: pin?\nA: Sure! 12")   # prompt and unsafe prefix: context


def test_sft_records_same_budget_and_prefix_is_context(tok):
    tr, _ = toy_split(4)
    bt, base = backtrack_sft_records(tr, tok, seed=1), backtrack_sft_records(tr, tok, mode="baseline", seed=1)
    assert len(bt) == len(base) == len(tr) + sum(e.harmful for e in tr)
    assert sorted({r["kind"] for r in bt}) == ["backtrack", "safe"] and {r["kind"] for r in base} == {"safe"}
    harm = {e.prompt: e for e in tr if e.harmful}
    for r in (r for r in bt if r["kind"] == "backtrack"):
        prefix = r["prompt"].split("assistant\n")[-1]
        e = next(e for p, e in harm.items() if p in r["prompt"])
        assert prefix == token_prefix(tok, e.unsafe, r["prefix_tokens"]) and e.unsafe.startswith(prefix) and prefix
        assert r["completion"] == RESET + e.safe
        assert all(not l for t, l in loss_tokens(r, tok)[:-(len(r["completion"]) - len(RESET) + 2)])   # nothing before [RESET] has loss
    with pytest.raises(LatentLMError, match="mode"): backtrack_sft_records(tr, tok, mode="x")


def test_dpo_pairs(tok):
    tr, _ = toy_split(4)
    pairs = backtrack_dpo_pairs(tr, tok, seed=0)
    kinds = [p["kind"] for p in pairs]
    assert kinds.count("unsafe_prefix") == kinds.count("safe_prefix") == sum(e.harmful for e in tr)
    assert kinds.count("benign") == sum(not e.harmful for e in tr)
    for p in pairs:
        if p["kind"] == "unsafe_prefix": assert p["chosen"].startswith(RESET) and is_unsafe(p["prompt"].split("assistant\n")[-1] + p["rejected"])
        else: assert p["rejected"].startswith(RESET) and not p["chosen"].startswith(RESET)


def test_reset_token_save_load_and_missing(tmp_path):
    m, t = tiny_lm(seed=0, vocab="bpe")
    rid = add_reset_token(m, t)
    m.save_pretrained(tmp_path / "m"); t.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists()
    m2, t2 = load_lm(tmp_path / "m")
    assert reset_token_id(t2) == rid and model_fingerprint(m2) == model_fingerprint(m)
    with pytest.raises(LatentLMError, match="add_reset_token"): HFGenerator(*tiny_lm(seed=0), reset_token=RESET)


def test_judges_use_visible_text():
    j = RuleSafetyJudge()
    assert j.score(["q"] * 3, ["pin 1234", "12[RESET]Sorry", "ok[RESET]9876"]) == [0.0, 1.0, 0.0]
    assert visible_text("a[RESET]b[RESET]c") == "c"


def test_bad_input_names_the_field(tmp_path, capsys):
    assert main(["backtrack", "fit", "--run_dir", str(tmp_path / "r"), "--world.n_people", "1"]) == 2
    assert "world.n_people" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["backtrack", "fit", "--run_dir", str(tmp_path / "r"), "--model.init", str(tmp_path / "nope")]) == 2
    assert "model.init" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["backtrack", "eval", "--run_dir", str(tmp_path / "none")]) == 2
    assert "fit" in capsys.readouterr().err


def test_generate_without_reset_token_is_a_clear_error(tmp_path, capsys):
    m, t = tiny_lm(seed=0)
    m.save_pretrained(tmp_path / "plain"); t.save_pretrained(tmp_path / "plain")
    assert main(["backtrack", "generate", "--model", str(tmp_path / "plain")]) == 2
    assert "add_reset_token" in capsys.readouterr().err


def _run(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LATENT_LM_QUIET": "1"}
    return subprocess.Popen([sys.executable, "-m", "latent_lm.cli", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_fit_eval_generate_in_process(tmp_path, capsys):
    "The three verbs through the CLI on a tiny run; a rerun finds every stage done."
    run = str(tmp_path / "r")
    assert main(["backtrack", "fit", "--run_dir", run, *TINY, "--arms", '["backtrack"]']) == 0
    assert (tmp_path / "r" / "backtrack" / "model" / "model.safetensors").exists() and not (tmp_path / "r" / "baseline").exists()
    capsys.readouterr()
    assert main(["backtrack", "fit", "--run_dir", run, *TINY, "--arms", '["backtrack"]']) == 0
    assert "pretrained (done before)" in capsys.readouterr().out
    assert main(["backtrack", "fit", "--run_dir", run, *TINY[:-2], "--dpo.batch_size", "8", "--arms", '["backtrack"]']) == 2   # other settings
    assert "overwrite" in capsys.readouterr().err
    assert main(["backtrack", "eval", "--run_dir", run, "--k", "2", "--m_max", "2", "--biases", "[0.0, -5.0]", "--max_new_tokens", "8", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["arms"]) == {"base", "backtrack"} and [s["bias"] for s in res["sweep"]["backtrack"]] == [0.0, -5.0]
    assert set(res["arms"]["base"]["unsafe_prefill"]) == {"1", "2"}
    assert (tmp_path / "r" / "figures" / "generations.png").exists() and (tmp_path / "r" / "figures" / "tradeoff.png").exists()
    assert main(["backtrack", "generate", "--model", str(tmp_path / "r" / "backtrack" / "model"), "--prompts", '["What is the pin of Kato?"]',
                 "--prefill", "Sure!", "--max_new_tokens", "6", "--out", str(tmp_path / "g.jsonl")]) == 0
    row = json.loads((tmp_path / "g.jsonl").read_text().splitlines()[0])
    assert row["raw_text"].startswith("Sure!") and row["text"] == row["raw_text"].split(RESET)[-1]


@pytest.mark.slow
def test_fit_resume_after_kill(tmp_path):
    "SIGKILL mid-run, rerun: finished stages are not redone, and every model equals an uninterrupted run's."
    ref = _run(["backtrack", "fit", "--run_dir", str(tmp_path / "ref"), *TINY])
    out, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err.decode()[-2000:]
    p = _run(["backtrack", "fit", "--run_dir", str(tmp_path / "k"), *TINY])
    t0 = time.time()
    while not (tmp_path / "k" / "pretrained" / "model" / "config.json").exists():
        assert p.poll() is None and time.time() - t0 < 300, "fit ended before the kill"
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    stamp = (tmp_path / "k" / "pretrained" / "model" / "model.safetensors").stat().st_mtime_ns
    r = _run(["backtrack", "fit", "--run_dir", str(tmp_path / "k"), *TINY])
    out, err = r.communicate(timeout=600)
    assert r.returncode == 0, err.decode()[-2000:]
    assert (tmp_path / "k" / "pretrained" / "model" / "model.safetensors").stat().st_mtime_ns == stamp        # not redone
    assert "pretrained (done before)" in out.decode()
    for arm in ("pretrained", "base", "baseline", "backtrack", "backtrack_dpo"):
        assert model_fingerprint(load_lm(tmp_path / "k" / arm / "model")[0]) == model_fingerprint(load_lm(tmp_path / "ref" / arm / "model")[0]), arm
