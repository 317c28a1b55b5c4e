"""Back-and-forth translation: the paper's prompts filled exactly; documents the backward model cannot take are skipped
with counted reasons (empty, not text, too long); the CLI on a shrunk tiny config writes TRL datasets with the paper's
tags, source columns and the rewriter's name, and models that load with from_pretrained; bad input exits 2 naming the
field and writes nothing; a run killed with SIGKILL mid-stage resumes without redoing finished records and ends as an
uninterrupted run does."""
import json, os, signal, subprocess, sys, time
from collections import Counter
from pathlib import Path

import pytest

from latent_lm.core import read_jsonl
from latent_lm.backtranslate.data import backward_prompt, rewrite_prompt, rating_prompt, SEED_TAG, WEB_TAG, load_corpus
from latent_lm.backtranslate.curate import STANDIN, parse_res
from latent_lm.backtranslate.app import run_backtranslate

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "backtranslate" / "tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LATENT_LM_QUIET": "1"}
SHRINK = ["--source.n_people", "6", "--source.n_noise", "6", "--source.n_long", "1", "--source.n_seed_people", "6",
          "--model.d_model", "32", "--model.n_layers", "1", "--model.n_heads", "2", "--model.vocab_size", "400",
          "--train.epochs", "2", "--train.batch_size", "32", "--train.lr", "5e-3", "--train.warmup_steps", "0",
          "--backward.max_new_tokens", "12", "--backward.batch_size", "2", "--final.arms", "[raw, filtered_rewritten]",
          "--final.max_new_tokens", "12"]


def test_prompts_are_filled_exactly_as_the_paper_gives_them():
    assert backward_prompt("Y.") == ("[INST] Below is a candidate answer to a question or instruction from an user. Write the most likely "
                                     "question to which the text below would be a great answer.\n\nY.\n\nAnswer in the style of an AI "
                                     "Assistant. [/INST]")
    assert rewrite_prompt("X?", "Y.") == (
        "[INST] Given the draft response to the provided question below, rewrite the draft to improve it, so it is a high quality "
        "response to the given question.\n\nDraft Response: Y.\n\nQuestion: X?\n\nGiven the above question, rewrite the draft "
        "response to be an improvement over the draft response. It should be as similar as possible, copying text where possible, "
        "while making the flow more clear, useful, relevant and providing a direct answer to the question. It should be written to be "
        "impeccably tailored to the user's question as if written by an AI Assistant, without extraneous information, reflecting "
        "expert knowledge, and demonstrating a high-quality, engaging, and insightful answer. Try not to add new facts that are not "
        "already in the draft response. Return the rewritten response between [RES] and [/RES]. [/INST]")
    r = rating_prompt("X?", "Y.")
    assert r.startswith("Below is an instruction from an user and a candidate answer. Evaluate whether or not the answer is a good "
                        "example of how AI Assistant should respond to the user's instruction. Please assign a score using the "
                        "following 5-point scale:\n1: ")
    assert [l[:3] for l in r.splitlines() if l[:2] in ("1:", "2:", "3:", "4:", "5:")] == ["1: ", "2: ", "3: ", "4: ", "5: "]
    assert r.endswith('then write "Score: <rating>" in the last line.\n\nX?\n\nY.')
    assert (SEED_TAG, WEB_TAG) == ("Answer in the style of an AI Assistant.", "Answer with knowledge from web search.")
    assert parse_res("x [RES] a [/RES]") == "a" and parse_res("[RES] a") is None


def test_unusable_documents_are_skipped_with_counted_reasons(tmp_path):
    docs = tmp_path / "docs"; docs.mkdir()
    (docs / "good1.txt").write_text("Mount Kobo is the highest peak of Estavia. It is 4,100 m high.")
    (docs / "good2.txt").write_text("The Lumo river flows through Quell. It is 400 km long.")
    (docs / "empty.txt").write_text("  \n")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (docs / "long.txt").write_text("Lorem ipsum dolor sit amet. " * 400)
    d = {"run_dir": str(tmp_path / "run"), "source": {"documents": str(docs), "n_seed_people": 3},
         "model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "vocab_size": 400, "max_len": 256},
         "train": {"lr": 5e-3, "epochs": 1, "batch_size": 32, "checkpoint": False}, "backward": {"max_new_tokens": 8},
         "filter": {"method": "none"}, "rewrite": {"rewriter": "standin"}, "final": {"train": False, "arms": ["rewritten"]}}
    s = run_backtranslate(d)
    assert s["funnel"][1]["dropped"] == {"empty": 1, "not_text": 1, "too_long": 1}
    assert s["funnel"][1]["n"] == 2 and s["n_questions"] == 0 and s["arms"] == {}
    data = read_jsonl(s["datasets"]["rewritten"])
    syn = [r for r in data if r["source"] == "synthetic"]
    assert {r["doc_id"] for r in syn} <= {"good1", "good2"} and all(r["rewriter"] == STANDIN for r in syn)


def test_documents_from_a_saved_hf_dataset(tmp_path):
    import datasets
    datasets.Dataset.from_dict({"id": ["a", "b"], "body": ["One page.", "Two pages."]}).save_to_disk(str(tmp_path / "ds"))
    assert [d["text"] for d in load_corpus(str(tmp_path / "ds"), text_field="body")] == ["One page.", "Two pages."]


def _cli(run_dir, extra=(), **kw):
    return subprocess.Popen([sys.executable, "-m", "latent_lm.cli", "backtranslate", "run", "--config", str(TINY), "--run_dir", str(run_dir),
                             *SHRINK, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, **kw)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bt") / "run"
    p = _cli(d, ["--json"])
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
    return d, json.loads(out)


def test_cli_run_writes_tagged_trl_datasets_and_loadable_models(cli_run):
    d, s = cli_run
    assert set(s["arms"]) == {"raw", "filtered_rewritten"} and s["rewriter"] == STANDIN
    assert s["arms"]["raw"]["win_rate_vs_raw"] == 0.5 and 0 <= s["arms"]["filtered_rewritten"]["qa_accuracy"] <= 1
    assert s["funnel"][1]["dropped"] == {"too_long": 1}
    for arm in ("raw", "filtered_rewritten"):
        data = read_jsonl(d / "data" / f"{arm}.jsonl")
        src = Counter(r["source"] for r in data)
        assert src["synthetic"] == s["n_synthetic_per_arm"] == s["n_kept"] and src["seed"] == s["n_seed"]
        for r in data:
            tag = SEED_TAG if r["source"] == "seed" else WEB_TAG
            assert r["prompt"].endswith("\n" + tag) and isinstance(r["completion"], str) and r["arm"] == arm
        assert {r["rewriter"] for r in data if r["source"] == "synthetic"} == ({STANDIN} if arm.endswith("rewritten") else {None})
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = s["models"]["filtered_rewritten"]
    assert (Path(path) / "model.safetensors").exists()
    m, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    assert m(**tok("Where was Ada born?", return_tensors="pt")).logits.shape[-1] == len(tok)
    assert all((d / "figures" / f).exists() for f in ("funnel.png", "example.png", "arms.png"))


@pytest.mark.parametrize("opt,val,field", [("--filter.keep_fraction", "0", "filter.keep_fraction"),
                                           ("--final.arms", "[raw, distilled]", "final.arms"),
                                           ("--source.documents", "/nonexistent/pages", "source.documents")])
def test_bad_input_exits_2_names_the_field_and_writes_nothing(tmp_path, capsys, opt, val, field):
    from latent_lm.cli import main
    rd = tmp_path / "run"
    assert main(["backtranslate", "run", "--config", str(TINY), "--run_dir", str(rd), opt, val]) == 2
    assert field in capsys.readouterr().err and not rd.exists()


def test_sigkill_mid_stage_resumes_without_redoing_finished_records(tmp_path, cli_run):
    d = tmp_path / "run"
    p = _cli(d, ["--json"])
    store, t0 = d / "instructions.jsonl", time.time()
    while p.poll() is None and time.time() - t0 < 600:
        if store.exists() and store.read_text().count("\n") >= 2: break
        time.sleep(0.02)
    assert p.poll() is None, "the run finished before it could be killed mid-stage"
    os.kill(p.pid, signal.SIGKILL); p.wait()
    before = store.read_text().splitlines()
    assert 2 <= len(before) and not (d / "summary.json").exists()
    p = _cli(d, ["--json"]); out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
    after = store.read_text().splitlines()
    assert after[:len(before)] == before and len(after) == len(read_jsonl(cli_run[0] / "instructions.jsonl"))
    s = json.loads(out)
    assert s["arms"] == cli_run[1]["arms"] and s["funnel"] == cli_run[1]["funnel"]
    assert read_jsonl(d / "data" / "filtered_rewritten.jsonl") == read_jsonl(cli_run[0] / "data" / "filtered_rewritten.jsonl")
