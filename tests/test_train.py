"""`latent_lm.train.lightning_main` on tiny DPO / SFT configs (a 2-layer from-scratch model on the arithmetic pairs of
configs/dpo and configs/sft): resume after SIGKILL equals the uninterrupted run (including from an end-of-epoch
checkpoint, batch for batch), Ctrl-C saves a checkpoint and exits 130, validate/test run, `--trainer.default_root_dir`
holds every output, a config mismatch is refused, a finished run says so, a damaged checkpoint is set aside.

Runs that are killed are subprocesses in their own session; the others run in-process."""
import contextlib, io, json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS = 12                # 48 pairs / batch 8 = 6 batches per epoch: two epochs, an end-of-epoch checkpoint at step 6

DPO_CFG = f"""
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_steps: {STEPS}
  log_every_n_steps: 1
  callbacks:
    - class_path: train_probe.Probe
model:
  model: latent_lm.lm.tiny_lm
  beta: 0.1
  lr: 1.0e-3
  warmup_steps: 2
data:
  data: {ROOT}/configs/dpo/arith_pairs.jsonl
  tokenizer: latent_lm.lm.tiny_tokenizer
  batch_size: 8
  num_workers: 0
"""

SFT_CFG = f"""
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 8
  log_every_n_steps: 1
model:
  model: latent_lm.lm.tiny_lm
  lr: 1.0e-3
data:
  data: {ROOT}/configs/sft/arith_sft.jsonl
  val_data: {ROOT}/configs/sft/arith_sft_val.jsonl
  tokenizer: latent_lm.lm.tiny_tokenizer
  batch_size: 8
"""

# A callback the config names (so it is part of every run and of the fingerprint): it logs every training batch, and,
# when the environment asks, waits to be killed at a step or slows the run down so that a signal lands mid-training.
PROBE = r'''
import hashlib, json, os, time
import lightning as L

class Probe(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        log = os.environ.get("PROBE_LOG")
        if log:
            h = hashlib.sha1(batch["input_ids"].numpy().tobytes()).hexdigest()[:12]
            with open(log, "a") as f:
                f.write(json.dumps({"step": trainer.global_step, "epoch": trainer.current_epoch, "batch": h,
                                    "loss": float(outputs["loss"])}) + "\n")
        if int(os.environ.get("PROBE_HANG_AT", "0")) == trainer.global_step:
            open(os.environ["PROBE_FLAG"], "w").close(); time.sleep(3600)
        if os.environ.get("PROBE_SLOW"): time.sleep(float(os.environ["PROBE_SLOW"]))
'''

MAIN = ("import sys; from latent_lm.train import lightning_main; from latent_lm.prefs import PreferenceModule, PreferenceDataModule; "
        "sys.exit(lightning_main(PreferenceModule, PreferenceDataModule, sys.argv[1:]))")
MAIN_FILE = "main_dpo.py"          # Lightning's ddp launcher re-runs the command line of each rank: it needs a script, not `-c`


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    (d / "train_probe.py").write_text(PROBE)
    (d / "dpo.yaml").write_text(DPO_CFG)
    (d / "sft.yaml").write_text(SFT_CFG)
    (d / MAIN_FILE).write_text(MAIN.replace("; ", "\n") + "\n")
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


def _env(work, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")}
    for k in ("LOCAL_RANK", "NODE_RANK", "GLOBAL_RANK", "RANK", "WORLD_SIZE"): env.pop(k, None)
    env.update(PYTHONPATH=os.pathsep.join([str(work), str(ROOT)]), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               LATENT_LM_QUIET="1", TOKENIZERS_PARALLELISM="false", **{k: str(v) for k, v in extra.items()})
    return env


def _start(work, run_dir, *args, **env):
    return subprocess.Popen([sys.executable, "-c", MAIN, "fit", "--config", str(work / "dpo.yaml"), "--trainer.default_root_dir",
                             str(run_dir), *args], cwd=work, env=_env(work, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _finish(p, timeout=120):
    try: out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); out, _ = p.communicate()
        pytest.fail(f"run did not finish in {timeout} s:\n{out[-3000:]}")
    return p.returncode, out


def _log(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def _weights(run_dir):
    from safetensors.torch import load_file
    return load_file(str(Path(run_dir) / "hf_model" / "model.safetensors"))


def _same_weights(a, b, tol=1e-6):
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= tol, f"weights differ by {worst}"


@pytest.fixture(scope="module")
def uninterrupted(work):
    "The reference run: 12 steps without interruption; its per-batch log and final weights."
    run = work / "full"
    rc, out = _finish(_start(work, run, PROBE_LOG=work / "full.jsonl"))
    assert rc == 0, out[-3000:]
    return {"log": _log(work / "full.jsonl"), "weights": _weights(run), "run": run}


def test_sigkill_after_end_of_epoch_checkpoint_resumes_exactly(work, uninterrupted):
    run, log = work / "killed", work / "killed.jsonl"
    p = _start(work, run, PROBE_LOG=log, PROBE_HANG_AT=8, PROBE_FLAG=work / "hanging")
    t0 = time.time()
    while not (work / "hanging").exists():
        assert p.poll() is None, p.communicate()[0][-3000:]
        assert time.time() - t0 < 120, "the run did not reach step 8"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL); p.communicate()
    first = _log(log)
    assert [r["step"] for r in first] == list(range(1, 9))
    # the newest checkpoint is the end-of-epoch one (epoch 0, step 6): the case Lightning mishandles without EpochEndResume
    from latent_lm.train import last_checkpoint, checkpoint_step
    assert checkpoint_step(last_checkpoint(run / "checkpoints", set_aside=False)) == 6
    assert not (run / "fit_done.json").exists()

    rc, out = _finish(_start(work, run, PROBE_LOG=work / "resumed.jsonl"))      # the same command again
    assert rc == 0, out[-3000:]
    assert "resuming from" in out and "step 6" in out, out[-2000:]
    resumed = _log(work / "resumed.jsonl")
    full = uninterrupted["log"]
    assert [r["step"] for r in resumed] == list(range(7, STEPS + 1))          # nothing redone before the checkpoint, nothing skipped
    seen = [r["batch"] for r in first[:6]] + [r["batch"] for r in resumed]
    assert seen == [r["batch"] for r in full]                                  # batch for batch the uninterrupted order
    assert [r["epoch"] for r in resumed] == [r["epoch"] for r in full[6:]]
    for a, b in zip(resumed, full[6:]): assert abs(a["loss"] - b["loss"]) < 1e-6, (a, b)
    _same_weights(_weights(run), uninterrupted["weights"])
    assert (run / "fit_done.json").exists()


def test_sigint_saves_a_checkpoint_and_exits_130(work, uninterrupted):
    run, log = work / "sigint", work / "sigint.jsonl"
    p = _start(work, run, PROBE_LOG=log, PROBE_SLOW=0.3)
    t0 = time.time()
    while not (log.exists() and len(_log(log)) >= 3):
        assert p.poll() is None, p.communicate()[0][-3000:]
        assert time.time() - t0 < 120, "the run did not reach step 3"
        time.sleep(0.1)
    os.kill(p.pid, signal.SIGINT)
    rc, out = _finish(p)
    assert rc == 130, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "interrupted.ckpt" in out and "Run the same command again" in out, out[-2000:]
    from latent_lm.train import checkpoint_step
    ck = run / "checkpoints" / "interrupted.ckpt"
    stopped = checkpoint_step(ck)
    assert 3 <= stopped < STEPS and stopped == len(_log(log))                 # saved at the batch boundary it stopped on
    assert not (run / "fit_done.json").exists()
    rc, out = _finish(_start(work, run, PROBE_LOG=work / "sigint_resumed.jsonl"))
    assert rc == 0 and f"step {stopped}" in out, out[-3000:]
    assert [r["step"] for r in _log(work / "sigint_resumed.jsonl")] == list(range(stopped + 1, STEPS + 1))
    _same_weights(_weights(run), uninterrupted["weights"])


def _main(work, argv, cls="dpo"):
    from latent_lm.train import lightning_main
    from latent_lm.prefs import PreferenceModule, PreferenceDataModule, SFTModule, SFTDataModule
    m, d = (PreferenceModule, PreferenceDataModule) if cls == "dpo" else (SFTModule, SFTDataModule)
    err = io.StringIO()
    cwd = os.getcwd(); os.chdir(work)
    try:
        with contextlib.redirect_stderr(err): rc = lightning_main(m, d, argv)
    finally: os.chdir(cwd)
    return rc, err.getvalue()


def test_default_root_dir_holds_every_output_and_validate_test_run(work, tmp_path):
    import pandas as pd
    (tmp_path / "sft.yaml").write_text(SFT_CFG)
    before = set(Path(work).iterdir())
    cwd = os.getcwd(); os.chdir(tmp_path)
    try:
        run = tmp_path / "elsewhere" / "sft_run"
        from latent_lm.train import lightning_main
        from latent_lm.prefs import SFTModule, SFTDataModule
        args = ["--config", "sft.yaml", "--trainer.default_root_dir", str(run)]
        with contextlib.redirect_stderr(io.StringIO()):
            assert lightning_main(SFTModule, SFTDataModule, ["fit", *args]) == 0
            assert lightning_main(SFTModule, SFTDataModule, ["validate", *args]) == 0
            assert lightning_main(SFTModule, SFTDataModule, ["test", *args]) == 0
    finally: os.chdir(cwd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "sft.yaml"]     # nothing written outside the run folder
    names = sorted(p.name for p in run.iterdir())
    assert names == ["checkpoints", "config.yaml", "fingerprint.json", "fit_done.json", "hf_model", "hparams.yaml", "metrics.csv",
                     "test_config.yaml", "validate_config.yaml"], names
    assert (run / "hf_model" / "model.safetensors").exists() and (run / "hf_model" / "tokenizer.json").exists()
    assert not any(p.name.startswith(".hf_model") for p in run.iterdir())
    m = pd.read_csv(run / "metrics.csv")
    assert m["train/loss"].notna().sum() == 8 and m["val/loss"].notna().sum() >= 2 and m["test/loss"].notna().sum() == 1
    # validate evaluated the trained weights (from the run's checkpoint), so its loss is the last validation's of fit ...
    vals = m["val/loss"].dropna().tolist()
    assert vals[-1] < vals[0]
    assert set(Path(work).iterdir()) == before


def test_config_mismatch_finished_run_and_overwrite(work, tmp_path):
    run = tmp_path / "dpo"
    base = ["--config", str(work / "dpo.yaml"), "--trainer.default_root_dir", str(run), "--trainer.max_steps", "3"]
    rc, err = _main(work, ["fit", *base])
    assert rc == 0, err
    from latent_lm.train import checkpoint_step
    assert checkpoint_step(run / "checkpoints" / "final.ckpt") == 3
    mtime = (run / "hf_model" / "model.safetensors").stat().st_mtime
    rc, err = _main(work, ["fit", *base])                                              # same command: finished, nothing trained
    assert rc == 0 and "is finished" in err and "--overwrite true" in err, err
    assert (run / "hf_model" / "model.safetensors").stat().st_mtime == mtime
    from latent_lm.core import LatentLMError
    with pytest.raises(LatentLMError) as e: _main(work, ["fit", *base, "--model.beta", "0.5"])
    assert "model.beta: 0.1 -> 0.5" in str(e.value) and "--overwrite" in str(e.value)
    with pytest.raises(LatentLMError, match=r"trainer.max_steps: 3 -> 4"): _main(work, ["fit", *base, "--trainer.max_steps", "4"])
    rc, err = _main(work, ["fit", *base, "--model.beta", "0.5", "--overwrite", "true"])
    assert rc == 0, err
    assert json.loads((run / "fingerprint.json").read_text())["fingerprint"]["config"]["model.beta"] == 0.5
    assert (run / "hf_model" / "model.safetensors").stat().st_mtime > mtime


def test_bad_input_fails_before_anything_is_built(work, tmp_path):
    from latent_lm.core import LatentLMError
    run = tmp_path / "bad"
    base = ["--config", str(work / "dpo.yaml"), "--trainer.default_root_dir", str(run)]
    t = time.time()
    with pytest.raises(LatentLMError, match="data.batch_size must be an integer >= 1, got 0"): _main(work, ["fit", *base, "--data.batch_size", "0"])
    with pytest.raises(LatentLMError, match="model.lr must be > 0"): _main(work, ["fit", *base, "--model.lr", "-1"])
    with pytest.raises(LatentLMError, match="file not found"): _main(work, ["fit", *base, "--data.data", str(tmp_path / "nope.jsonl")])
    with pytest.raises(LatentLMError, match="max_steps must be"): _main(work, ["fit", *base, "--trainer.max_steps", "0"])
    assert time.time() - t < 20 and not run.exists()                                   # refused before the run folder exists
    rc, err = _main(work, ["fit", *base, "--trainer.max_stepz", "3"])                   # a parser error: its exit code, no traceback
    assert rc == 2 and "max_stepz" in err


def test_damaged_checkpoint_is_set_aside_and_the_run_goes_on(work, tmp_path):
    import pandas as pd
    run = tmp_path / "dpo"
    base = ["--config", str(work / "dpo.yaml"), "--trainer.default_root_dir", str(run), "--trainer.max_steps", "8"]
    rc, err = _main(work, ["fit", *base])
    assert rc == 0, err
    ck = run / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["epoch=1-step=8.ckpt", "final.ckpt", "last.ckpt"]
    # step 8 was already saved, so final.ckpt is a hard link to that file, not a third copy of the same bytes
    assert (ck / "final.ckpt").stat().st_ino in {(ck / n).stat().st_ino for n in ("last.ckpt", "epoch=1-step=8.ckpt")}
    from latent_lm.train import checkpoint_step
    assert checkpoint_step(ck / "final.ckpt") == 8
    def killed():                                      # as if the run had been killed after its last regular checkpoint
        (run / "fit_done.json").unlink(); (ck / "final.ckpt").unlink(missing_ok=True)
    killed()
    last = ck / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])         # ... while writing last.ckpt (the newest file)
    rc, err = _main(work, ["fit", *base])
    assert rc == 0, err
    assert "last.ckpt is damaged" in err and "set aside as last.ckpt.corrupt" in err and "epoch=1-step=8.ckpt (step 8)" in err, err
    assert (ck / "last.ckpt.corrupt").exists() and (run / "fit_done.json").exists()
    assert pd.read_csv(run / "metrics.csv")["train/loss"].notna().sum() == 8          # nothing trained again
    # every checkpoint damaged: each is set aside and the run starts over
    killed()
    for p in ck.glob("*.ckpt"): p.write_bytes(b"")
    rc, err = _main(work, ["fit", *base])
    assert rc == 0, err
    assert "epoch=1-step=8.ckpt is damaged (empty file)" in err and "resuming from" not in err, err
    assert not list(ck.glob("*.ckpt.corrupt.corrupt"))
    assert pd.read_csv(run / "metrics.csv")["train/loss"].notna().sum() == 16         # 8 steps, then 8 more from scratch


def test_ddp_two_processes_through_lightning_main(work, uninterrupted):
    "Two CPU processes (ddp, batch 4 each = the global batch 8 of the 1-process run): one fingerprint and lock (rank 0), one run folder."
    run = work / "ddp"
    p = subprocess.Popen([sys.executable, MAIN_FILE, "fit", "--config", "dpo.yaml", "--trainer.default_root_dir", str(run),
                          "--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.batch_size", "4"],
                         cwd=work, env=_env(work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    rc, out = _finish(p, timeout=180)
    assert rc == 0, out[-3000:]
    assert json.loads((run / "fit_done.json").read_text())["global_step"] == STEPS
    assert not (run / ".lock").exists()
    _same_weights(_weights(run), uninterrupted["weights"], tol=1e-4)       # the same global batches, summed over two ranks
    rc, out = _finish(subprocess.Popen([sys.executable, MAIN_FILE, "fit", "--config", "dpo.yaml", "--trainer.default_root_dir", str(run),
                                        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.batch_size", "4"], cwd=work,
                                       env=_env(work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True))
    assert rc == 0 and "is finished" in out, out[-2000:]


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_ctrl_c_mid_epoch_resumes_byte_identical(tmp_path, schedule):
    """A round's DPO training stopped by Ctrl-C after any batch and resumed ends with the uninterrupted model, also with a
    schedule that reads trainer.estimated_stepping_batches (the loader Lightning builds to count batches once missed the
    checkpoint's loader state, so a mid-epoch resume replayed the epoch's first batch: the ScPO crash test caught it)."""
    import hashlib
    import latent_lm.train as T
    from latent_lm.rounds import train_round, TrainConfig
    from latent_lm.lm import tiny_lm
    m, tok = tiny_lm(); T.save_pretrained_atomic(tmp_path / "m0", m, tok)
    recs = [{"prompt": f"{i}+{i}=", "chosen": str(2 * i), "rejected": str(2 * i + 1) + "x" * (i % 3), "weight": 1.0} for i in range(10)]
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, lr_schedule=schedule)       # 2 batches per epoch, 4 steps
    digest = lambda d: hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
    ref = train_round(tmp_path / "m0", recs, tmp_path / "ref", cfg)
    assert ref["steps"] == 4
    orig = T.GracefulInterrupt.on_train_batch_end
    for at in range(4):
        seen = []
        def stop_at(self, trainer, pl_module, outputs, batch, batch_idx, at=at):
            if len(seen) == at: self.requested = True                         # as a Ctrl-C during batch `at` would
            seen.append(batch_idx)
            return orig(self, trainer, pl_module, outputs, batch, batch_idx)
        out = tmp_path / f"stopped_{at}"
        T.GracefulInterrupt.on_train_batch_end = stop_at
        try:
            with pytest.raises(KeyboardInterrupt): train_round(tmp_path / "m0", recs, out, cfg)
        finally: T.GracefulInterrupt.on_train_batch_end = orig
        info = train_round(tmp_path / "m0", recs, out, cfg)
        assert info == ref and digest(out) == digest(tmp_path / "ref"), (at, info, ref)
