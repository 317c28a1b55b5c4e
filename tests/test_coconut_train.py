"Coconut curriculum under Lightning: every variant config runs, the stage and optimizer resets follow the schedule and survive a resume, checkpoints reload, the CLI works."
import copy, json, io, contextlib, logging
from pathlib import Path
import pytest
import torch
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from latent_lm.core import LatentLMError, read_jsonl
from latent_lm.coconut.data import make_symbolic_prosqa, save_coconut_json
from latent_lm.coconut.train import VARIANTS, CoconutModule, CoconutDataModule, fit_coconut, resolve_config, load_coconut
from latent_lm.coconut.app import generate, analyze, Questions

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "coconut"
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

SMALL = ["--trainer.max_epochs=3", "--data.n_train=64", "--data.n_val=16", "--data.n_test=0", "--data.batch_size=32",
         "--model.first_stage_epochs=1", "--model.epochs_per_stage=1", "--model.max_latent_stage=2", "--model.d_model=32"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_configs_run_through_lightning_cli(variant, tmp_path):
    from lightning.pytorch.cli import LightningCLI
    assert (CONFIGS / f"{variant}.yaml").exists()
    args = ["fit", "--config", str(CONFIGS / "tiny.yaml"), "--config", str(CONFIGS / f"{variant}.yaml"), *SMALL,
            f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cli = LightningCLI(CoconutModule, CoconutDataModule, args=args, save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
    m = cli.model
    assert m.curriculum.variant == variant
    want = {"coconut": [0, 1, 2], "no_thought": [0, 1, 2], "pause_as_thought": [0, 1, 2], "no_curriculum": [3, 3, 3]}.get(variant, [0, 0, 0])
    assert [h["stage"] for h in m.history] == want
    log_dir = Path(cli.trainer.log_dir)
    assert (log_dir / "metrics.csv").exists() and (log_dir / "config.yaml").exists() and (log_dir / "hf_model" / "coconut.json").exists()
    thoughts_at_final = {"coconut": 2, "no_curriculum": 2, "pause": 2, "pause_as_thought": 2}.get(variant, 0)
    res = m.generate_records(cli.datamodule.splits["val"][:4], stage=3, max_new_tokens=4)
    assert [r["n_thoughts"] for r in res] == [thoughts_at_final] * 4
    assert all(r["tokens_per_answer"] == r["n_tokens"] + (thoughts_at_final if variant in ("coconut", "no_curriculum") else 0) for r in res)


BASES = ("tiny.yaml", "paper.yaml", "paper_gsm.yaml", "control.yaml", "prosqa_text.yaml")


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_loads_with_the_lightning_cli_parser(name):
    "Each file in configs/coconut parses with LightningCLI's own parser (bases alone, variant overlays stacked on tiny.yaml)."
    files = [CONFIGS / name] if name in BASES else [CONFIGS / "tiny.yaml", CONFIGS / name]
    cfg = resolve_config(files)
    assert set(cfg) == {"model", "data", "trainer", "seed_everything"}
    m = cfg["model"]
    assert m["variant"] == ("coconut" if name in BASES else name[:-len(".yaml")])
    CoconutModule(**{**m, "model": "tiny-gpt2"})                    # the model section builds a module (tiny: no download)
    if name == "paper.yaml":
        assert (m["c_thought"], m["max_latent_stage"], m["epochs_per_stage"], m["lr"]) == (1, 6, 5, 1e-4)
        assert cfg["trainer"]["devices"] == 4 and cfg["trainer"]["strategy"] == "ddp"
    if name == "tiny.yaml":
        assert cfg["data"]["task_kwargs"] == {"n_nodes": 10, "min_hops": 2, "max_hops": 3} and cfg["trainer"]["max_epochs"] == 16
    if name == "control.yaml":                                       # the positive control: 3-hop pointer chasing, one layer
        assert cfg["data"]["data"] == "pointer_chase" and cfg["data"]["task_kwargs"] == {"n_nodes": 12, "hops": 2}
        assert (m["n_layers"], m["max_latent_stage"], m["use_markers"]) == (1, 2, False)
    if name == "prosqa_text.yaml":                                   # the paper's setting at CPU size: language steps, small graphs
        assert cfg["data"]["data"] == "prosqa" and cfg["data"]["relabel"] and cfg["data"]["task_kwargs"] == {"n_nodes": 9, "min_hops": 2, "max_hops": 2}
        assert (m["max_latent_stage"], m["use_markers"], m["first_stage_epochs"], m["n_layers"], m["d_model"]) == (2, False, 60, 4, 128)


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(LatentLMError, match="variantt"): resolve_config(CONFIGS / "tiny.yaml", model={"variantt": "cot"})
    with pytest.raises(LatentLMError, match="not found"): resolve_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model:\n  lr: fast\n")
    with pytest.raises(LatentLMError, match="lr"): resolve_config(tmp_path / "bad.yaml")


class Record(L.Callback):
    "At the first batch of every epoch: the stage, the thoughts in the batch, the AdamW step count of one parameter."
    def __init__(self): self.rows = []
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx: return
        opt = trainer.optimizers[0]; p = next(iter(pl_module.coconut.parameters()))
        st = opt.state.get(p, {})
        k = [k for _, k in pl_module.collator.layouts(batch, pl_module.stage, trainer.current_epoch)]
        self.rows.append((trainer.current_epoch, pl_module.stage, max(k), int(st["step"]) if "step" in st else None))


CFG = {"model": dict(model="tiny-gpt2", d_model=32, n_layers=1, n_heads=2, max_len=64, variant="coconut", max_latent_stage=2,
                     first_stage_epochs=1, epochs_per_stage=2, use_markers=False, lr=1e-3, eval_generate=False, save_hf=False),
       "data": dict(data="symbolic_prosqa", n_train=64, n_val=8, batch_size=32,
                    task_kwargs=dict(n_nodes=8, min_hops=2, max_hops=2)),
       "trainer": dict(accelerator="cpu", num_sanity_val_steps=0, enable_checkpointing=True)}


def _fit(tmp, reset, max_epochs, ckpt=None, every_step=False):
    rec = Record()
    cb = ModelCheckpoint(dirpath=tmp / "ckpt", save_top_k=-1, every_n_train_steps=1 if every_step else None,
                         every_n_epochs=None if every_step else 1, filename="{epoch}-{step}")
    cfg = copy.deepcopy(CFG); cfg["model"]["reset_optimizer"] = reset
    L.seed_everything(0, verbose=False)
    m, dm = CoconutModule(**cfg["model"], seed=0), CoconutDataModule(**cfg["data"], seed=0)
    tr = L.Trainer(max_epochs=max_epochs, callbacks=[rec, cb], default_root_dir=tmp, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, **cfg["trainer"])
    tr.fit(m, dm, ckpt_path=ckpt)
    return m, rec.rows


@pytest.mark.parametrize("reset,steps", [("stage", [None, None, 2, None, 2]), ("epoch", [None] * 5), ("never", [None, 2, 4, 6, 8])])
def test_stage_schedule_and_optimizer_reset(reset, steps, tmp_path):
    m, rows = _fit(tmp_path, reset, 5)
    assert [r[1] for r in rows] == [0, 1, 1, 2, 2]                        # first_stage_epochs=1, then 2 epochs per stage
    assert [r[2] for r in rows] == [0, 1, 1, 2, 2]                        # the batches carry that many thoughts
    assert [r[3] for r in rows] == steps                                  # AdamW state before the epoch's first step


def test_resume_at_stage_boundary_and_mid_epoch_matches_uninterrupted(tmp_path):
    full, rows_full = _fit(tmp_path / "full", "stage", 5)
    # stop after epoch 2 (its checkpoint), resume: epoch 3 starts a new stage and must reset the optimizer
    _fit(tmp_path / "a", "stage", 3)
    ck = sorted((tmp_path / "a" / "ckpt").glob("epoch=2-*.ckpt"))[0]
    res, rows_res = _fit(tmp_path / "a", "stage", 5, ckpt=str(ck))
    assert rows_res == rows_full[3:]
    for (k, a), b in zip(full.state_dict().items(), res.state_dict().values()): torch.testing.assert_close(a, b, msg=k)
    # checkpoint after the first step of epoch 3 (the reset epoch): resuming must not reset a second time
    _fit(tmp_path / "b", "stage", 5, every_step=True)
    ck = tmp_path / "b" / "ckpt" / "epoch=3-step=7.ckpt"
    assert ck.exists(), sorted(p.name for p in (tmp_path / "b" / "ckpt").glob("*"))
    res2, _ = _fit(tmp_path / "b2", "stage", 5, ckpt=str(ck))
    assert res2.history == full.history and [h["reset"] for h in full.history] == [False, True, False, True, False]
    for (k, a), b in zip(full.state_dict().items(), res2.state_dict().values()): torch.testing.assert_close(a, b, msg=k)


def test_load_from_checkpoint_rebuilds_the_model(tmp_path):
    m, _ = _fit(tmp_path, "stage", 2)
    ck = sorted((tmp_path / "ckpt").glob("*.ckpt"))[-1]
    m2 = CoconutModule.load_from_checkpoint(str(ck))
    assert m2.tokenizer.get_vocab() == m.tokenizer.get_vocab()
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()): torch.testing.assert_close(a, b)
    assert m2.history == m.history


def test_json_data_save_load_and_cli(tmp_path):
    recs = make_symbolic_prosqa(48, seed=3, n_nodes=8, min_hops=2, max_hops=2)
    save_coconut_json(tmp_path / "train.json", recs[:40]); save_coconut_json(tmp_path / "val.json", recs[40:])
    cfg = copy.deepcopy(CFG); cfg["model"].update(save_hf=True, eval_generate=True, max_new_tokens=4)
    cfg["data"] = dict(data=str(tmp_path / "train.json"), val_data=str(tmp_path / "val.json"), batch_size=20)
    m, dm, met = fit_coconut(cfg, tmp_path / "run", seed=0, trainer=dict(max_epochs=2))
    assert "val/acc" in met and (tmp_path / "run" / "metrics.csv").exists()
    hf = tmp_path / "run" / "hf_model"
    lc = load_coconut(hf)
    a = lc.answer(recs[40:], max_new_tokens=4)
    b = m.generate_records(recs[40:], max_new_tokens=4)
    assert [x["text"] for x in a] == [x["text"] for x in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert generate(hf, Questions(str(tmp_path / "val.json")), max_new_tokens=4, out=tmp_path / "a.jsonl") == 0
        assert generate(hf, question=[recs[0]["question"]], thoughts=1, max_new_tokens=3) == 0
        assert analyze(hf, tmp_path / "an", Questions(str(tmp_path / "val.json")), max_new_tokens=4) == 0
    got = list(read_jsonl(tmp_path / "a.jsonl"))
    assert [g["text"] for g in got] == [x["text"] for x in a]
    assert [r["k"] for r in json.loads((tmp_path / "an" / "k_sweep.json").read_text())["rows"]] == [0, 1, 2]
    assert (tmp_path / "an" / "k_sweep.png").exists() and (tmp_path / "an" / "latent_search.json").exists()
    with pytest.raises(LatentLMError, match="coconut.json"): load_coconut(tmp_path)


def test_bad_settings():
    with pytest.raises(LatentLMError, match="reset_optimizer"): CoconutModule(reset_optimizer="sometimes")
    with pytest.raises(LatentLMError, match="Unknown Coconut variant"): CoconutModule(variant="icot")
    with pytest.raises(LatentLMError, match="neither a generator"): CoconutDataModule(data="no_such_task")
    m = CoconutModule()
    with pytest.raises(LatentLMError, match="Build the model first"): m.encode({"question": "q", "steps": [], "answer": "a"})


def test_fit_from_record_lists(tmp_path):
    "Records passed as lists (what a benchmark does): symbolic ones are relabelled, and the test split is evaluated."
    recs = make_symbolic_prosqa(40, seed=7, n_nodes=8, min_hops=2, max_hops=2)
    cfg = copy.deepcopy(CFG); cfg["model"].update(eval_generate=True, max_new_tokens=4)
    m, dm, met = fit_coconut(cfg, tmp_path, seed=1, records={"train": recs[:24], "val": recs[24:32], "test": recs[32:]},
                             trainer=dict(max_epochs=1), test=True)
    assert dm.symbolic() == (8, True) and dm._transform() is not None
    assert "test/acc" in met and "val/acc" in met
    assert met["test/thoughts"] == 0 and m.history[-1]["stage"] == 0       # test uses the last trained stage (stage 0 here)
    ev = m.evaluate(recs[32:], max_new_tokens=4)
    assert ev["n"] == 8 and 0 <= ev["acc"] <= 1 and all(r["n_thoughts"] == 2 for r in ev["results"])


DDP_SCRIPT = """
import sys, json
from latent_lm.coconut.train import fit_coconut
cfg = {"model": dict(model="tiny-gpt2", d_model=32, n_layers=1, n_heads=2, max_len=64, variant="coconut", max_latent_stage=2,
                     first_stage_epochs=1, epochs_per_stage=1, use_markers=False, lr=1e-3, max_new_tokens=4),
       "data": dict(data="symbolic_prosqa", n_train=64, n_val=16, batch_size=16, task_kwargs=dict(n_nodes=8, min_hops=2, max_hops=2)),
       "trainer": dict(accelerator="cpu", devices=2, strategy="ddp", num_sanity_val_steps=0, max_epochs=3)}
m, dm, met = fit_coconut(cfg, sys.argv[1], seed=0)
print("RESULT", m.global_rank, json.dumps({"history": m.history, "val_thoughts": met["val/thoughts"]}))
"""


def test_two_process_ddp(tmp_path):
    "The curriculum, the resets and the saving run under a 2-process CPU DDP."
    import os, subprocess, sys
    script = tmp_path / "ddp.py"; script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", LATENT_LM_QUIET="1", HF_HUB_OFFLINE="1")
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    res = {int(l.split()[1]): json.loads(l.split(" ", 2)[2]) for l in p.stdout.splitlines() if l.startswith("RESULT")}
    assert set(res) == {0, 1}
    for r in res.values():
        assert [h["stage"] for h in r["history"]] == [0, 1, 2] and [h["reset"] for h in r["history"]] == [False, True, True]
        assert r["val_thoughts"] == 2.0
    assert (tmp_path / "run" / "hf_model" / "coconut.json").exists()
