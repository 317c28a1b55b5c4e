"""Distributed and resumable training of `latent_lm.prefs.PreferenceModule` (DPO on a tiny model, CPU only).

* A 2-process `ddp` run (gloo, per-device batch 4) follows the loss curve of a 1-process run with the same global
  batch (8), step by step.
* A run killed with SIGKILL after its mid-epoch checkpoint resumes from `last.ckpt` and continues the loss curve of
  an uninterrupted run.

Each run is a subprocess (Lightning's `ddp` launcher re-executes the script), started in its own session so that the
whole process group is killed on timeout or failure."""
import json, os, signal, subprocess, sys, time
from contextlib import contextmanager
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS, GLOBAL_BATCH = 16, 8

SCRIPT = r'''
"Train PreferenceModule (DPO) on a toy preference set; rank 0 appends the per-step loss (mean over ranks) to <out>/<log>."
import argparse, json, os, time, logging, warnings
from pathlib import Path
ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True); ap.add_argument("--log", default="losses.jsonl")
ap.add_argument("--devices", type=int, default=1); ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--steps", type=int, default=16); ap.add_argument("--ckpt-every", type=int, default=0)
ap.add_argument("--hang-at", type=int, default=0); ap.add_argument("--resume", action="store_true")
ap.add_argument("--save-hf", action="store_true")
a = ap.parse_args()
for name in ("lightning.pytorch", "lightning.fabric"): logging.getLogger(name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore")
import torch, lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from latent_lm.lm import tiny_lm
from latent_lm.prefs import PreferenceModule, PreferenceDataModule, toy_preference_pairs
torch.set_num_threads(1)
out = Path(a.out); out.mkdir(parents=True, exist_ok=True)

class LossLog(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = float(trainer.callback_metrics["train/loss"])          # logged with sync_dist=True: the mean over ranks
        if trainer.is_global_zero:
            with open(out / a.log, "a") as f:
                f.write(json.dumps({"step": trainer.global_step, "loss": loss, "per_device_batch": int(batch["weights"].shape[0]),
                                    "world_size": trainer.world_size}) + "\n")
                f.flush(); os.fsync(f.fileno())
        if a.hang_at and trainer.global_step == a.hang_at:             # wait here to be killed
            if trainer.is_global_zero: (out / "hanging").touch()
            time.sleep(3600)

L.seed_everything(0)
model, tok = tiny_lm(seed=0)
dm = PreferenceDataModule(toy_preference_pairs(32), tok, batch_size=a.batch, shuffle=True, seed=0, ref_cache=str(out / "ref.jsonl"))
pm = PreferenceModule(model, beta=0.1, lr=1e-3, warmup_steps=2, save_hf=a.save_hf)
cbs = [LossLog()]
if a.ckpt_every: cbs.append(ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=a.ckpt_every, save_last=True, save_top_k=-1))
tr = L.Trainer(accelerator="cpu", devices=a.devices, strategy="ddp" if a.devices > 1 else "auto", max_steps=a.steps,
               default_root_dir=out, logger=False, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=bool(a.ckpt_every), callbacks=cbs, log_every_n_steps=1)
tr.fit(pm, dm, ckpt_path="last" if a.resume else None)
'''

def _env():
    env = dict(os.environ)
    for k in ("LOCAL_RANK", "NODE_RANK", "GLOBAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)                                   # never inherit a distributed setup from the caller
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", LATENT_LM_QUIET="1")
    return env

@contextmanager
def launch(script: Path, out: Path, *args, name: str = "run"):
    "Start the training script in a new session; on exit, SIGKILL its whole process group if anything is left."
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / f"{name}.log", "w")
    p = subprocess.Popen([sys.executable, str(script), "--out", str(out), *map(str, args)], cwd=out, env=_env(),
                         stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    try: yield p
    finally:
        try: os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError: pass
        p.wait(); logf.close()

def run(script, out, *args, name="run", timeout=150):
    with launch(script, out, *args, name=name) as p:
        try: rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired: pytest.fail(f"{name} did not finish in {timeout} s:\n{(out / f'{name}.log').read_text()[-3000:]}")
    assert rc == 0, f"{name} failed (exit {rc}):\n{(out / f'{name}.log').read_text()[-3000:]}"

def losses(path: Path) -> dict[int, dict]:
    recs = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    return {r["step"]: r for r in recs}

@pytest.fixture(scope="module")
def script(tmp_path_factory):
    p = tmp_path_factory.mktemp("script") / "train_prefs.py"
    p.write_text(SCRIPT)
    return p

@pytest.fixture(scope="module")
def single(script, tmp_path_factory):
    "The uninterrupted 1-process run: per-step losses."
    out = tmp_path_factory.mktemp("single")
    run(script, out, "--batch", GLOBAL_BATCH, "--steps", STEPS, "--save-hf", name="single")
    return {"losses": losses(out / "losses.jsonl"), "out": out}

def test_ddp_two_processes_match_one(script, single, tmp_path):
    run(script, tmp_path, "--devices", 2, "--batch", GLOBAL_BATCH // 2, "--steps", STEPS, "--save-hf", name="ddp")
    ddp, single_out, single = losses(tmp_path / "losses.jsonl"), single["out"], single["losses"]
    assert sorted(ddp) == sorted(single) == list(range(1, STEPS + 1))
    assert {r["world_size"] for r in ddp.values()} == {2} and {r["per_device_batch"] for r in ddp.values()} == {GLOBAL_BATCH // 2}
    assert {r["per_device_batch"] for r in single.values()} == {GLOBAL_BATCH}
    for s in single:
        assert abs(ddp[s]["loss"] - single[s]["loss"]) < 1e-4, (s, ddp[s]["loss"], single[s]["loss"])
    assert abs(single[1]["loss"] - 0.693147) < 1e-4                  # DPO starts at log 2 (policy == reference)
    assert single[STEPS]["loss"] < single[1]["loss"] - 0.05           # and the curve moves, so the comparison means something
    # rank 0 saved the trained model with save_pretrained (every rank took part in gathering it); it equals the 1-process model
    import torch
    from latent_lm.lm import load_lm
    (m1, tok), (m2, _) = load_lm(single_out / "hf_model"), load_lm(tmp_path / "hf_model")
    x = torch.tensor([tok("A wxyz", add_special_tokens=False)["input_ids"]])
    with torch.no_grad(): assert torch.allclose(m1(x).logits, m2(x).logits, atol=1e-4)

def test_sigkill_and_resume_continues_the_curve(script, single, tmp_path):
    single = single["losses"]
    ckpt_every, hang_at = 6, 7          # 4 batches per epoch: the step-6 checkpoint is mid-epoch (epoch 1, batch 2)
    with launch(script, tmp_path, "--batch", GLOBAL_BATCH, "--steps", STEPS, "--ckpt-every", ckpt_every, "--hang-at", hang_at,
                "--log", "killed.jsonl", name="killed") as p:
        t0 = time.time()
        while not (tmp_path / "hanging").exists():
            assert p.poll() is None, f"the run ended before step {hang_at}:\n{(tmp_path / 'killed.log').read_text()[-3000:]}"
            assert time.time() - t0 < 120, "the run did not reach step 7 in 120 s"
            time.sleep(0.2)
        os.killpg(p.pid, signal.SIGKILL)
        assert p.wait(timeout=30) == -signal.SIGKILL
    killed = losses(tmp_path / "killed.jsonl")
    assert sorted(killed) == list(range(1, hang_at + 1))              # it trained past its last checkpoint before dying
    assert (tmp_path / "ckpt" / "last.ckpt").exists() and (tmp_path / "ckpt" / "epoch=1-step=6.ckpt").exists()
    assert not (tmp_path / "ckpt" / "epoch=1-step=7.ckpt").exists()

    run(script, tmp_path, "--batch", GLOBAL_BATCH, "--steps", STEPS, "--ckpt-every", ckpt_every, "--resume", "--log", "resumed.jsonl",
        name="resumed")
    resumed = losses(tmp_path / "resumed.jsonl")
    assert sorted(resumed) == list(range(ckpt_every + 1, STEPS + 1))  # picks up right after the step-6 checkpoint
    for s in killed: assert abs(killed[s]["loss"] - single[s]["loss"]) < 1e-5, (s, killed[s], single[s])
    for s in resumed: assert abs(resumed[s]["loss"] - single[s]["loss"]) < 1e-4, (s, resumed[s]["loss"], single[s]["loss"])
    # the reference log-probs were cached by the first run and reused (same initial weights, same tokens)
    refs = [json.loads(l) for l in (tmp_path / "ref.jsonl").read_text().splitlines()]
    assert len(refs) == 32 and len({r["ref_model"] for r in refs}) == 1
