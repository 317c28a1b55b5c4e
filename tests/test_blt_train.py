"BLT training: Lightning modules, the configs, and a 2-process CPU ddp run of the entropy model (n-gram) and the BLT."
import inspect, json, os, subprocess, sys, textwrap
from dataclasses import fields
from pathlib import Path
import pytest
import torch
import yaml
import lightning as L
from latent_lm.blt.entropy import EntropyLMModule, load_entropy_model
from latent_lm.blt.model import BLTConfig
from latent_lm.blt.train import BLTDataModule, BLTModule, load_blt_bundle
from latent_lm.registry import load_object
from latent_lm.train import lightning_main, make_trainer
from latent_lm.blt.app import BLT_METHOD

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "blt"
TINY_BLT = dict(dim_encoder=32, dim_global=64, dim_decoder=32, n_layers_global=1, n_layers_decoder=1, window_encoder=32,
                window_decoder=32, ngram_sizes=[3, 4], hash_buckets=256, max_seq_len=256)


def _trainer(root, steps, **kw):
    return make_trainer(accelerator="cpu", devices=1, max_steps=steps, default_root_dir=str(root), logger=False,
                        enable_checkpointing=False, gradient_clip_val=1.0, limit_val_batches=2, **kw)


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    d = BLTDataModule(max_bytes=40_000, max_heldout_bytes=8_000, seq_len=64, batch_size=8, target_patch_size=4.0,
                      entropy_model="ngram", cache_dir=str(tmp_path_factory.mktemp("cache")))
    d.prepare_data(); d.setup("fit")
    return d


def test_entropy_lm_module_learns(tmp_path, dm):
    L.seed_everything(0, verbose=False)
    m = EntropyLMModule(kind="transformer", dim=32, n_layers=1, n_heads=2, window=32, lr=3e-3, warmup_steps=2)
    tr = _trainer(tmp_path, 30)
    before = tr.validate(m, dm, verbose=False)[0]["val_bpb"]
    tr.fit(m, dm)
    after = tr.validate(m, dm, verbose=False)[0]["val_bpb"]
    assert after < before - 1.5, (before, after)


def test_ngram_module_counts_every_target_once(tmp_path, dm):
    m = EntropyLMModule(kind="ngram", ngram_n=2, lr=0.05, warmup_steps=0, lr_schedule="constant")
    _trainer(tmp_path, 5).fit(m, dm)
    assert int(m.model.counts.sum()) == 5 * 8 * 64


def test_blt_module_fit_and_bundle(tmp_path, dm):
    L.seed_everything(0, verbose=False)
    m = BLTModule(BLTConfig(**TINY_BLT), lr=3e-3, warmup_steps=2)
    tr = _trainer(tmp_path, 20)
    before = tr.validate(m, dm, verbose=False)[0]
    tr.fit(m, dm)
    after = tr.validate(m, dm, verbose=False)[0]
    assert after["val_bpb"] < before["val_bpb"] - 1.0
    seen = [b["patch_lengths"] for _, b in zip(range(2), dm.val_dataloader())]         # limit_val_batches=2
    assert abs(after["val_bytes_per_patch"] - sum(int(p.sum()) for p in seen) / sum(int((p > 0).sum()) for p in seen)) < 1e-4
    b = load_blt_bundle(tmp_path)
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        assert torch.allclose(b["model"](batch["tokens"], batch["patch_lengths"]), m.model.eval()(batch["tokens"], batch["patch_lengths"]), atol=1e-5)
    assert b["patcher"].to_dict() == dm.patcher.to_dict() and b["entropy_model"] is not None
    # a checkpoint's hyper-parameters rebuild the module (config stored as plain data)
    ck = tmp_path / "m.ckpt"; tr.save_checkpoint(ck)
    m2 = BLTModule.load_from_checkpoint(ck, weights_only=True)
    assert m2.model.config == m.model.config


def _lightning(verb: str, argv: list[str]) -> int:
    "Run a BLT Lightning verb the way the CLI does: the registry's classes through `latent_lm.train.lightning_main`."
    v = BLT_METHOD.all_verbs()[verb]
    return lightning_main(load_object(v.model), load_object(v.data), [v.subcommand, *argv])


def test_tiny_configs_run_cut_down(tmp_path):
    out = tmp_path / "blt"
    assert _lightning("fit", ["--config", str(CONFIGS / "tiny.yaml"), "--trainer.max_steps=2", "--trainer.val_check_interval=2",
                              "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={out}", "--data.max_bytes=40000",
                              "--data.max_heldout_bytes=6000", "--data.entropy_steps=3", "--data.seq_len=64",
                              "--trainer.enable_progress_bar=false"]) == 0
    assert (out / "config.yaml").exists() and (out / "metrics.csv").exists() and (out / "blt_bundle" / "model.safetensors").exists()
    assert load_blt_bundle(out)["entropy_model"].kind == "transformer"
    assert (out / "blt_data").is_dir()                    # the entropy model was trained by the data module, inside the run folder
    out = tmp_path / "ent"
    assert _lightning("fit-entropy", ["--config", str(CONFIGS / "entropy_tiny.yaml"), "--trainer.max_steps=2",
                                      "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
                                      f"--trainer.default_root_dir={out}", "--data.max_bytes=40000", "--data.max_heldout_bytes=6000",
                                      "--data.seq_len=64", "--trainer.enable_progress_bar=false"]) == 0
    ck = sorted(out.rglob("*.ckpt"))
    assert ck and load_entropy_model(ck[-1]).kind == "transformer"
    assert _lightning("validate-entropy", ["--config", str(CONFIGS / "entropy_tiny.yaml"), f"--trainer.default_root_dir={out}",
                                           "--trainer.limit_val_batches=1", "--data.max_bytes=40000", "--data.max_heldout_bytes=6000",
                                           "--data.seq_len=64", "--trainer.enable_progress_bar=false"]) == 0


def test_paper_config_matches_the_classes():
    "paper.yaml cannot run on CPU; check that every key is a real argument and that the BLT config validates."
    cfg = yaml.safe_load((CONFIGS / "paper.yaml").read_text())
    BLTConfig(**cfg["model"]["config"])
    mod_args = set(inspect.signature(BLTModule.__init__).parameters)
    data_args = set(inspect.signature(BLTDataModule.__init__).parameters)
    assert set(cfg["model"]) <= mod_args, set(cfg["model"]) - mod_args
    assert set(cfg["data"]) <= data_args, set(cfg["data"]) - data_args
    for name in ("tiny.yaml", "entropy_tiny.yaml"):
        c = yaml.safe_load((CONFIGS / name).read_text())
        assert set(c["data"]) <= data_args


DDP_SCRIPT = textwrap.dedent('''
    import json, sys
    import torch, lightning as L
    from latent_lm.blt.entropy import EntropyLMModule
    from latent_lm.blt.model import BLTConfig
    from latent_lm.blt.train import BLTDataModule, BLTModule
    root, kind = sys.argv[1], sys.argv[2]
    L.seed_everything(0, verbose=False)
    blt = kind == "blt"
    dm = BLTDataModule(max_bytes=30_000, max_heldout_bytes=6_000, seq_len=64, batch_size=4, target_patch_size=4.0,
                       patching="entropy" if blt else "byte", entropy_model="ngram" if blt else None, cache_dir=root + "/cache")
    m = (BLTModule(BLTConfig(**json.loads(sys.argv[3])), lr=1e-3, warmup_steps=1) if blt else
         EntropyLMModule(kind=kind, ngram_n=2, dim=32, n_layers=1, n_heads=2, window=16, lr=1e-3, warmup_steps=1))
    tr = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=4, default_root_dir=root, enable_progress_bar=False,
                   enable_model_summary=False, logger=False, enable_checkpointing=False, limit_val_batches=2,
                   val_check_interval=4, check_val_every_n_epoch=None)
    tr.fit(m, dm)
    chk = {k: float(v.double().sum()) for k, v in m.state_dict().items()}
    json.dump({"world": tr.world_size, "chk": chk, "val_bpb": float(tr.callback_metrics.get("val_bpb", -1))},
              open(f"{root}/rank{tr.global_rank}.json", "w"))
''')


@pytest.mark.parametrize("kind", ["ngram", "blt"])
def test_ddp_two_processes(tmp_path, kind):
    script = tmp_path / "ddp_run.py"; script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", LATENT_LM_QUIET="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(script), str(tmp_path), kind, json.dumps(TINY_BLT)], env=env, capture_output=True,
                       text=True, timeout=420, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["chk"] == ranks[1]["chk"]                          # both ranks hold the same model
    if kind == "ngram":                                                   # each rank counted both ranks' batches: 4 steps x 2 ranks x 4 x 64
        assert ranks[0]["chk"]["model.counts"] == 4 * 2 * 4 * 64
    else:
        assert (tmp_path / "blt_bundle" / "model.safetensors").exists() and ranks[0]["val_bpb"] > 0
