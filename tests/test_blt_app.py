"BLT commands (blt.app): bad input is refused up front with a LatentLMError naming the problem, and nothing is written."
import json, os, time
from pathlib import Path
import pytest
import torch
from latent_lm.core import LatentLMError
from latent_lm.blt.app import patch, generate, BLT_METHOD
from latent_lm.blt.entropy import EntropyModel, EntropyModelConfig
from latent_lm.blt.model import BLT, BLTConfig
from latent_lm.blt.patching import Patcher
from latent_lm.blt.train import BLTDataModule, BLTModule, save_blt_bundle
from latent_lm.train import lightning_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    "A folder with a good bundle, damaged bundles and odd input files."
    d = tmp_path_factory.mktemp("blt_app")
    torch.manual_seed(0)
    blt = BLT(BLTConfig(dim_encoder=32, dim_global=64, dim_decoder=32, n_layers_global=1, n_layers_decoder=1, window_encoder=16,
                        window_decoder=16, ngram_sizes=(3,), hash_buckets=64, max_seq_len=64)).eval()
    em = EntropyModel(EntropyModelConfig(dim=16, n_layers=1, n_heads=2, window=8)).eval()
    save_blt_bundle(d / "good" / "blt_bundle", blt, em, Patcher("entropy", threshold=4.0))
    for name in ("cut_blt", "cut_entropy", "bad_patcher", "wrong_weights", "no_config", "other_version"):
        save_blt_bundle(d / name, blt, em, Patcher("entropy", threshold=4.0))
    (d / "cut_blt" / "model.safetensors").write_bytes((d / "cut_blt" / "model.safetensors").read_bytes()[:300])
    (d / "cut_entropy" / "entropy_model" / "model.safetensors").write_bytes(b"\x00" * 64)
    cfg = json.loads((d / "bad_patcher" / "config.json").read_text()); cfg["patcher"]["threshold"] = "high"
    (d / "bad_patcher" / "config.json").write_text(json.dumps(cfg))
    from safetensors.torch import load_file, save_file
    sd = load_file(d / "wrong_weights" / "model.safetensors")
    save_file({k: v[..., :1].contiguous() if v.dim() else v for k, v in sd.items()}, d / "wrong_weights" / "model.safetensors")
    (d / "no_config" / "config.json").unlink()
    cfg = json.loads((d / "other_version" / "config.json").read_text()); cfg["blt"]["patch_dropout"] = 0.1; del cfg["blt"]["rope_theta"]
    (d / "other_version" / "config.json").write_text(json.dumps(cfg))
    (d / "latin1.txt").write_bytes(b"caf\xe9\nna\xefve\n")
    (d / "prompts.txt").write_text("The cat\n")
    (d / "afile").write_text("not a folder")
    (d / "adir").mkdir()
    return d


def _files(d: Path) -> set:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


GOOD = "good"
# (function, kwargs, part of the expected message); paths are relative to the work folder
PATCH_CASES = [
    (dict(text="abc", max_bytes=-5), "max_bytes must be an integer >= 1, got -5"),
    (dict(text="abc", max_bytes=0), "max_bytes must be an integer >= 1"),
    (dict(text="abc", target_patch_size=0.5), "target_patch_size must be a number >= 1"),
    (dict(), "Give a text to patch"),
    (dict(text="abc", file="prompts.txt"), "Give one text to patch, not text and file"),
    (dict(file="missing.txt"), "file not found"),
    (dict(file="adir"), "is a folder"),
    (dict(text="abc", mode="bpe"), "Unknown patching mode 'bpe'"),
    (dict(text="abc", mode="static", threshold=2.0), "does not read threshold"),
    (dict(text="abc", mode="static", patch_size=4.5), "integer patch_size"),
    (dict(text="abc", mode="random", p=2.0), "0 < p <= 1"),
    (dict(text="abc", threshold=float("nan")), "threshold must be a finite number"),
    (dict(text="abc", mode="entropy", max_patch_length=0), "max_patch_length must be an integer >= 1"),
    (dict(text="abc", color="purple"), "color must be auto, always or never"),
    (dict(text="abc", model="ngram:0"), "n-gram order"),
    (dict(text="abc", model="nowhere"), "no such file or folder"),
    (dict(text="abc", model="cut_entropy"), "entropy_model/model.safetensors is not a valid safetensors file"),
    (dict(text="abc", model="bad_patcher", threshold=None), "bad patcher settings in config.json"),
    (dict(text="abc", out="afile"), "is a file"),
]
GEN_CASES = [
    (dict(model=GOOD, prompts=["hi"], max_new_bytes=-5), "max_new_bytes must be an integer >= 1, got -5"),
    (dict(model=GOOD, prompts=["hi"], max_new_bytes=0), "max_new_bytes must be an integer >= 1"),
    (dict(model=GOOD, prompts=["hi"], batch_size=0), "batch_size must be an integer >= 1"),
    (dict(model=GOOD, prompts=["hi"], temperature=-1.0), "temperature must be a number >= 0"),
    (dict(model=GOOD, prompts=["hi"], top_p=1.5), "top_p must be a number in (0, 1]"),
    (dict(model=GOOD, prompts=["hi"], top_p=0.0), "top_p must be a number in (0, 1]"),
    (dict(model=GOOD, prompts=["hi"], seed=1.5), "seed must be an integer"),
    (dict(model=GOOD, prompts=["hi"], method="fast"), "method must be 'cached' or 'recompute'"),
    (dict(model=GOOD), "Give at least one prompt"),
    (dict(model=GOOD, prompts=["ok", ""]), "prompt 1 is empty"),
    (dict(model=GOOD, prompts=["x" * 100]), "model's context is 64 bytes"),
    (dict(model=GOOD, prompts_file="latin1.txt"), "is not UTF-8 text: byte 0xe9 at offset 3 (line 1)"),
    (dict(model=GOOD, prompts_file="missing.txt"), "file not found"),
    (dict(model=GOOD, prompts=["hi"], mode="topk", patch_size=4), "cannot patch while generating"),
    (dict(model=GOOD, prompts=["hi"], mode="static"), "needs `patch_size`"),
    (dict(model=GOOD, prompts=["hi"], mode="space", threshold=1.0), "does not read threshold"),
    (dict(model="nowhere", prompts=["hi"]), "no such file or folder"),
    (dict(model="ngram", prompts=["hi"]), "model must be a BLT"),
    (dict(model="cut_blt", prompts=["hi"]), "cut_blt/model.safetensors is not a valid safetensors file"),
    (dict(model="wrong_weights", prompts=["hi"]), "the weights do not match the BLT"),
    (dict(model="cut_entropy", prompts=["hi"]), "entropy_model/model.safetensors is not a valid safetensors file"),
    (dict(model="bad_patcher", prompts=["hi"]), "bad patcher settings in config.json"),
    (dict(model="other_version", prompts=["hi"]), "unknown fields: patch_dropout"),
    (dict(model=GOOD, prompts=["hi"], entropy_model="ngram:9"), "n-gram order"),
    (dict(model=GOOD, prompts=["hi"], out="adir"), "is a folder"),
]


def _resolve(work, kw):
    out = dict(kw)
    for k in ("file", "model", "prompts_file", "out", "entropy_model"):
        if k in out and isinstance(out[k], str) and not out[k].startswith("ngram"): out[k] = str(work / out[k])
    return out


@pytest.mark.parametrize("kw,msg", PATCH_CASES, ids=[m[:40] for _, m in PATCH_CASES])
def test_patch_bad_input(work, kw, msg, monkeypatch):
    monkeypatch.setenv("LATENT_LM_CACHE", str(work / "cache"))
    before = _files(work)
    t0 = time.time()
    with pytest.raises(LatentLMError) as e: patch(**{"color": "never", **_resolve(work, kw)})
    assert msg in str(e.value), str(e.value)
    assert time.time() - t0 < 20                                   # refused before any real work
    assert _files(work) - before <= {"cache", *(p for p in _files(work) if p.startswith("cache"))}   # nothing written but the n-gram cache


@pytest.mark.parametrize("kw,msg", GEN_CASES, ids=[m[:40] for _, m in GEN_CASES])
def test_generate_bad_input(work, kw, msg, tmp_path):
    before = _files(work)
    out = tmp_path / "gen.jsonl"
    kw = {"out": str(out), **_resolve(work, kw)}
    with pytest.raises(LatentLMError) as e: generate(**kw)
    assert msg in str(e.value), str(e.value)
    assert _files(work) == before and not out.exists() and not list(tmp_path.iterdir())


def test_generate_good_bundle_still_works(work, tmp_path):
    "The table's good bundle is good: the failures above come from the inputs, not from the bundle."
    out = tmp_path / "g.jsonl"
    assert generate(str(work / GOOD), prompts_file=str(work / "prompts.txt"), max_new_bytes=4, out=str(out)) == 0
    assert [json.loads(l)["prompt"] for l in out.read_text().splitlines()] == ["The cat"]


DATA_CASES = [
    (dict(batch_size=0), "data.batch_size must be an integer >= 1, got 0"),
    (dict(seq_len=1), "data.seq_len must be an integer >= 2"),
    (dict(max_bytes=-5), "data.max_bytes must be an integer >= 1"),
    (dict(heldout_fraction=1.5), "data.heldout_fraction"),
    (dict(target_patch_size=0.5), "data.target_patch_size"),
    (dict(entropy_steps=0), "data.entropy_steps"),
    (dict(patching="bpe"), "Unknown patching mode"),
    (dict(patching="static", target_patch_size=None), "needs data.patch_size or a data.target_patch_size"),
    (dict(patching="global_monotonic"), "needs `relative_threshold`"),
    (dict(patching="entropy", entropy_model=None), "needs an entropy model"),
    (dict(entropy_model="no/such/model.pt"), "neither 'ngram[:N]'"),
]


@pytest.mark.parametrize("kw,msg", DATA_CASES, ids=[m[:40] for _, m in DATA_CASES])
def test_data_module_bad_settings(kw, msg, tmp_path):
    with pytest.raises(LatentLMError) as e: BLTDataModule(cache_dir=str(tmp_path), **kw)
    assert msg in str(e.value), str(e.value)
    assert not list(tmp_path.iterdir())


def test_fit_with_batch_size_zero_fails_before_anything_trains(tmp_path):
    "Issue 9: `blt fit --data.batch_size 0` failed only after the entropy model had trained."
    t0 = time.time()
    with pytest.raises(LatentLMError, match="batch_size must be an integer >= 1"):
        lightning_main(BLTModule, BLTDataModule, ["fit", "--config", str(ROOT / "configs" / "blt" / "tiny.yaml"), "--data.batch_size=0",
                                                  f"--trainer.default_root_dir={tmp_path / 'run'}"])
    assert time.time() - t0 < 30 and not (tmp_path / "run" / "blt_data").exists()


def test_registry_entry():
    verbs = BLT_METHOD.all_verbs()
    assert {"fit", "validate", "test", "fit-entropy", "validate-entropy", "test-entropy", "patch", "generate", "convert"} == set(verbs)
    for name, v in BLT_METHOD.notebooks.items(): assert (ROOT / "nbs" / f"{name}.ipynb").exists(), name
    for c in BLT_METHOD.configs: assert (ROOT / c).exists(), c
    assert (ROOT / BLT_METHOD.bench).exists()


def test_no_import_cycles_between_blt_modules():
    "No BLT module imports one that imports it back (the old circle was blt.generate <-> blt.train), and only app imports the registry."
    import ast
    pkg = ROOT / "latent_lm" / "blt"
    deps = {}
    for f in pkg.glob("*.py"):
        mods = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                name = node.module if node.level == 0 else ("latent_lm.blt." + node.module if node.level == 1 else "latent_lm." + node.module)
                mods.add(name)
        deps[f.stem] = {m.split(".")[2] for m in mods if m.startswith("latent_lm.blt.")} - {f.stem}
        if f.stem != "app": assert not any(m.startswith("latent_lm.registry") or m == "latent_lm.app" for m in mods), f.stem
    def reach(a, seen=()):
        for b in deps.get(a, ()):
            if b in seen: continue
            yield b; yield from reach(b, seen + (b,))
    for m in deps: assert m not in set(reach(m)), f"import cycle through latent_lm.blt.{m}"
    assert "train" not in deps["generate"] and "app" not in set().union(*(deps[m] for m in deps if m != "app"))


@pytest.mark.parametrize("name,msg", [("cut_blt", "cut_blt/model.safetensors is not a valid safetensors file"),
                                      ("wrong_weights", "the weights do not match the BLT"),
                                      ("bad_patcher", "bad patcher settings in config.json"),
                                      ("cut_entropy", "entropy_model/model.safetensors is not a valid safetensors file"),
                                      ("no_config", r"is not a BLT bundle \(no config.json\)"),
                                      ("other_version", "unknown fields: patch_dropout; missing fields: rope_theta")])
def test_load_damaged_bundle(work, name, msg):
    from latent_lm.blt.train import load_blt_bundle
    with pytest.raises(LatentLMError, match=msg): load_blt_bundle(work / name)
    assert load_blt_bundle(work / GOOD)["patcher"].mode == "entropy"
