"""Source2Synth: table synthesis drops malformed generations and unsafe queries with counted reasons; injected noise is
booked exactly; curation with an oracle keeps exactly the right entries; multi-hop synthesis and imputation; the CLI on
a shrunk tiny config with both tasks; junk generators in the multi-hop stage; bad input; resume after an interruption and
after SIGKILL (mid table run, mid multi-hop stage) without redoing finished records."""
import json, os, re, signal, subprocess, sys, time
from collections import Counter
from pathlib import Path

import pytest

from latent_lm.core import LatentLMError, read_jsonl
from latent_lm.generate import FunctionGenerator
from latent_lm.sources import SQLRunner, generated_tables, generated_documents, same_result
from latent_lm.source2synth.tables import synthesize_table, parse_sql, parse_question, template_question, sft_record
from latent_lm.source2synth.curate import split_slices, answerability, funnel, retention
from latent_lm.source2synth.mhqa import synthesize_mhqa, kb_answer, mhqa_record, soft_em

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "source2synth" / "tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LATENT_LM_QUIET": "1"}
SMALL = {"seed": 0, "source": {"n_tables": 6, "n_test_tables": 2, "kinds": ["players"]},
         "synth": {"tasks": ["tables"], "per_table": 8, "noise": 0.4, "test_per_table": 4},
         "model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "vocab_size": 400, "max_new_tokens": 24},
         "train": {"lr": 3e-3, "epochs": 2, "batch_size": 16, "checkpoint": False, "lr_schedule": "constant"},
         "curate": {"k": 2, "enabled": False, "final_epochs": 1}}
SHRINK = ["--source.n_tables", "6", "--source.n_test_tables", "2", "--source.kinds", "[players]", "--synth.per_table", "8",
          "--synth.noise", "0.4", "--synth.test_per_table", "4", "--model.d_model", "32", "--model.n_layers", "1", "--model.n_heads", "2",
          "--model.vocab_size", "400", "--model.max_new_tokens", "24", "--train.epochs", "2", "--train.batch_size", "16",
          "--train.lr_schedule", "constant", "--curate.k", "2", "--curate.enabled", "false", "--curate.final_epochs", "1",
          "--curate.uncurated_baseline", "false", "--source.n_people", "6", "--source.n_test_people", "4", "--synth.per_document", "2",
          "--synth.test_per_document", "1", "--model.mhqa_max_new_tokens", "40"]


# ---------------------------------------------------------------- table synthesis

def test_malformed_and_unsafe_generations_are_dropped_and_counted():
    t = next(x for x in generated_tables(6, seed=3) if x.name == "players")
    seeds = iter(["", *["A fact."] * 8])
    sqls = iter(["SELECT MAX(age) FROM players", "I refuse.", "WITH a AS (SELECT 1) DELETE FROM players",
                 "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT MAX(x) FROM c", "SELECT nope FROM players",
                 "SELECT name FROM players WHERE age > 999", "SELECT MAX(age) FROM players", "```sql\nSELECT MIN(goals) FROM players\n```"])
    def gen(prompt, **kw):
        if "interesting statement" in prompt: return next(seeds)
        if "SQL statements" in prompt: return next(sqls)
        return "Which one?" if "MAX" in prompt else "no question here"
    recs = synthesize_table(t, 9, generator=FunctionGenerator(gen), runner=SQLRunner(t, time_limit=0.1))
    tally = Counter(r["status"] for r in recs)
    assert tally == Counter({"no_seed": 1, "ok": 1, "no_sql": 1, "writes": 1, "timeout": 1, "error": 1,
                             "empty_result": 1, "duplicate": 1, "no_question": 1}), tally
    ok = [r for r in recs if r["status"] == "ok"]
    assert ok[0]["question"] == "Which one?" and same_result(ok[0]["answer"], SQLRunner(t).run("SELECT MAX(age) FROM players").rows)
    assert SQLRunner(t).run("SELECT COUNT(*) FROM players").rows == [[len(t.rows)]]


def test_generators_returning_junk_never_crash():
    t = generated_tables(1, seed=0)[0]
    for junk in ["", "\n\n", "SELECT", "?" * 3, "🙂" * 50, "Statement:\nSQL:\nQuestion:"]:
        recs = synthesize_table(t, 3, generator=FunctionGenerator(lambda p, **kw: junk), runner=SQLRunner(t, time_limit=0.1))
        assert len(recs) == 3 and all(r["status"] != "ok" or r["question"] for r in recs)
    assert parse_sql(None) is None and parse_question(12) is None
    assert parse_sql("SELECT x FROM t; DROP TABLE t") == "SELECT x FROM t"           # only the first statement is ever taken


def test_noise_is_booked_by_executing_both_queries():
    tabs = generated_tables(10, seed=1)
    recs = [r for t in tabs for r in synthesize_table(t, 15, seed=2, noise=0.5) if r["status"] == "ok"]
    runners = {t.id: SQLRunner(t) for t in tabs}
    noisy = [r for r in recs if r["noisy"]]
    assert 0.3 < len(noisy) / len(recs) < 0.7
    for r in recs:
        assert template_question(r["question_sql"]) == r["question"]
        assert same_result(runners[r["table_id"]].run(r["sql"]).rows, r["answer"])
        truth = runners[r["table_id"]].run(r["question_sql"]).rows
        assert r["error"] == (not same_result(truth, r["answer"]))
        assert not r["error"] or r["noisy"]
    assert not any(r["noisy"] for t in tabs for r in synthesize_table(t, 15, seed=2, noise=0.0))


# ---------------------------------------------------------------- curation

def _oracle(prompt, **kw):
    "Writes the grammar query whose template question is the prompt's question (brute force)."
    schema, q = prompt.split("\n")[0], prompt.split("\n")[1][len("Question: "):]
    name, cols = schema.split("(")[0], [c.split()[0] for c in schema[schema.index("(") + 1:-1].split(", ")]
    cands = []
    m = re.match(r"What is the (\w+) of (.+)\?$", q)
    if m: cands.append(f"SELECT {m[1]} FROM {name} WHERE {cols[0]} = '{m[2]}'")
    m = re.match(r"How many rows have (\w+) above (-?[\d.]+)\?$", q) or re.match(r"How many rows have (\w+) (.+)\?$", q)
    if m: cands += [f"SELECT COUNT(*) FROM {name} WHERE {m[1]} > {m[2]}", f"SELECT COUNT(*) FROM {name} WHERE {m[1]} = '{m[2]}'"]
    for c in cols:
        cands += [f"SELECT MAX({c}) FROM {name}", f"SELECT MIN({c}) FROM {name}", f"SELECT {cols[0]} FROM {name} ORDER BY {c} DESC LIMIT 1",
                  f"SELECT {cols[0]} FROM {name} ORDER BY {c} ASC LIMIT 1"]
    return next((s for s in cands if template_question(s) == q), "DROP TABLE x")


def test_oracle_curation_keeps_exactly_the_right_entries():
    tabs = generated_tables(12, seed=0)
    synth = [r for t in tabs for r in synthesize_table(t, 12, seed=0, noise=0.5)]
    items = [r for r in synth if r["status"] == "ok"]
    s0, s1 = split_slices(items, seed=0)
    v = answerability(FunctionGenerator(_oracle), s1, {t.id: SQLRunner(t) for t in tabs}, k=3)
    err = {r["key"]: r["error"] for r in s1}
    assert [x["kept"] for x in v] == [not err[x["key"]] for x in v]
    assert all(x["tries"] == 1 for x in v if x["kept"])
    assert {x["reason"] for x in v} <= {"answered", "wrong_result"}
    st = funnel(synth, len(s0), v)
    assert [s["n"] for s in st] == [len(synth), len(items), len(s1), sum(not e for e in err.values())]
    assert retention(st)["curation"] == pytest.approx(sum(not e for e in err.values()) / len(s1))


def test_answerability_counts_failed_queries():
    tabs = generated_tables(2, seed=0)
    items = [r for t in tabs for r in synthesize_table(t, 6, seed=0) if r["status"] == "ok"]
    v = answerability(FunctionGenerator(lambda p, **kw: "PRAGMA x"), items, {t.id: SQLRunner(t) for t in tabs}, k=3)
    assert {x["reason"] for x in v} == {"sql_pragma"} and not any(x["kept"] for x in v)
    assert all(len(x["attempts"]) == 3 for x in v)


# ---------------------------------------------------------------- multi-hop

def test_mhqa_template_entries_and_imputation():
    docs = generated_documents(10, seed=2)
    recs = synthesize_mhqa(docs, seed=1)
    assert Counter(r["status"] for r in recs) == Counter({"ok": 10})
    for r in recs:
        assert r["entity"] not in r["question"] and kb_answer(r["question"], docs) == r["answer"] == kb_answer(r["q2"], docs)
        assert soft_em(mhqa_record(r)["completion"], r["answer"])
    wrong = lambda q: "nobody knows"
    assert Counter(r["status"] for r in synthesize_mhqa(docs, seed=1, answer_fn=wrong)) == Counter({"imputation_failed": 10})


def test_mhqa_malformed_generations_are_dropped():
    docs = generated_documents(6, seed=0)
    recs = synthesize_mhqa(docs, generator=FunctionGenerator(lambda p, **kw: "no idea"))
    assert Counter(r["status"] for r in recs) == Counter({"no_q1": 6, "no_link": len(docs) - 6})


# ---------------------------------------------------------------- the CLI

def _cli(run_dir, extra=()):
    return subprocess.run([sys.executable, "-m", "latent_lm.cli", "source2synth", "run", "--config", str(TINY), "--run_dir", str(run_dir),
                           *SHRINK, *extra], capture_output=True, text=True, env=ENV, timeout=900)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    "The shrunk tiny config through the CLI, in this process (the slow SIGKILL test runs it as a process)."
    from test_rounds import cli
    d = tmp_path_factory.mktemp("s2s") / "run"
    rc, out, err = cli(["source2synth", "run", "--config", TINY, "--run_dir", d, *SHRINK, "--json"])
    assert rc == 0, err[-3000:]
    return d, json.loads(out)


def test_cli_runs_the_tiny_config(cli_run):
    d, s = cli_run
    assert s["tasks"] == ["tables", "mhqa"] and s["models"] == ["base", "llm_synth", "llm_curated"]
    for task in s["tasks"]:
        b = s[task]
        assert set(b["score"]) == {"base", "llm_synth", "llm_curated"} and all(0 <= v <= 1 for v in b["score"].values())
        assert b["funnel"][0]["stage"] == "generation attempts" and b["n_slice0"] + b["n_slice1"] == b["n_entries"] == b["funnel"][1]["n"]
        assert b["n_curated"] == b["n_slice1"]                       # curate.enabled false: all of slice 1
        assert len(b["errors"]) == 4 and b["n_test"] >= 1
    assert s["mhqa"]["funnel"][0]["n"] == 12 and s["mhqa"]["n_test"] == len(read_jsonl(d / "eval" / "mhqa_llm_curated.jsonl"))
    train = {r["title"] for r in generated_documents(6, seed=0)}
    assert not any(r["d1"].split("/", 1)[1] in train for x in read_jsonl(d / "mhqa_test.jsonl") for r in x["records"])   # unseen people
    for f in ("funnel.png", "exact_match.png"): assert (d / "figures" / f).stat().st_size > 1000
    assert (d / "llm_curated" / "model" / "model.safetensors").exists()
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(d / "llm_curated" / "model")


def test_cli_rerun_resumes_and_other_settings_are_refused(cli_run, capsys):
    from test_rounds import cli                                    # in this process: no second start-up
    d, s = cli_run
    argv = ["source2synth", "run", "--config", TINY, "--run_dir", d, *SHRINK]
    before = [(d / f).read_bytes() for f in ("synth.jsonl", "mhqa.jsonl")]
    rc, out, err = cli([*argv, "--json"], capsys)
    assert rc == 0, err[-2000:]
    assert json.loads(out) == s and [(d / f).read_bytes() for f in ("synth.jsonl", "mhqa.jsonl")] == before
    rc, out, err = cli([*argv, "--synth.noise", "0.1"], capsys)
    assert rc == 2 and "synth.noise" in err, err[-2000:]


BAD = [(["--synth.noise", "1.5"], "synth.noise"), (["--curate.k", "0"], "curate.k"), (["--source.tables", "/no/such/tables"], "source.tables"),
       (["--model.d_model", "30", "--model.n_heads", "4"], "model.d_model"), (["--curate.slice0", "1"], "curate.slice0"),
       (["--source.kinds", "[planets]"], "source.kinds"), (["--train.lr", "0"], "train.lr"), (["--synth.tasks", "[tables,poems]"], "synth.tasks"),
       (["--source.documents", "/no/such/docs"], "source.documents"), (["--source.n_people", "1"], "source.n_people"),
       (["--model.mhqa_max_new_tokens", "0"], "model.mhqa_max_new_tokens")]


@pytest.mark.parametrize("extra,needle", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_input_exit_2_names_the_field_writes_nothing(tmp_path, capsys, extra, needle):
    from test_rounds import check_rejected
    check_rejected(["source2synth", "run", "--config", TINY, "--run_dir", tmp_path / "run", *SHRINK, *extra], needle, tmp_path / "run", capsys)


# ---------------------------------------------------------------- resume

def test_interrupted_run_resumes_without_redoing_finished_records(tmp_path, monkeypatch):
    import latent_lm.source2synth.app as app
    from latent_lm.source2synth.app import run_source2synth
    real, calls = app.synthesize_table, []
    def counting(t, *a, **kw):
        calls.append(t.id)
        if stop_at[0] is not None and len(calls) == stop_at[0]: raise KeyboardInterrupt
        return real(t, *a, **kw)
    stop_at = [None]
    monkeypatch.setattr(app, "synthesize_table", counting)
    ref = run_source2synth({**SMALL, "run_dir": str(tmp_path / "ref")})
    n_tables = SMALL["source"]["n_tables"]
    calls.clear(); stop_at[0] = 6                       # chunks of 4 tables: the first chunk is committed, the second is not
    with pytest.raises(KeyboardInterrupt):
        run_source2synth({**SMALL, "run_dir": str(tmp_path / "run")})
    assert len(read_jsonl(tmp_path / "run" / "synth.jsonl")) == 4
    calls.clear(); stop_at[0] = None
    got = run_source2synth({**SMALL, "run_dir": str(tmp_path / "run")})
    synth_calls = [c for c in calls if c.startswith("players_0_")]
    assert len(synth_calls) == n_tables - 4, calls                       # only the tables not yet committed
    strip = lambda s: {k: v for k, v in s.items() if k != "run_dir"}
    assert strip(got) == strip(ref)
    calls.clear()
    assert strip(run_source2synth({**SMALL, "run_dir": str(tmp_path / "run")})) == strip(ref) and calls == []


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_same_results(tmp_path):
    ref = _cli(tmp_path / "ref", ["--json"])
    assert ref.returncode == 0, ref.stderr[-2000:]
    d = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "latent_lm.cli", "source2synth", "run", "--config", str(TINY), "--run_dir", str(d), *SHRINK, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    t0 = time.time()
    while not (d / "llm_synth").exists() and time.time() - t0 < 300 and p.poll() is None: time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be killed"
    os.kill(p.pid, signal.SIGKILL); p.wait()
    synth = (d / "synth.jsonl").read_bytes()
    r = _cli(d, ["--json"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert (d / "synth.jsonl").read_bytes() == synth                  # finished records were kept, not redone
    strip = lambda out: {k: v for k, v in json.loads(out).items() if k not in ("run_dir", "figures")}
    assert strip(r.stdout) == strip(ref.stdout)


def _slow_mhqa_run(argv, log):
    "In a forked child: the CLI run, its multi-hop synthesis slowed to 0.3 s per seed document (so that it can be killed mid-stage)."
    import latent_lm.source2synth.app as app
    from latent_lm.cli import main
    real = app.synthesize_mhqa
    def slow(*a, seeds=None, **kw):
        time.sleep(0.3); Path(log).open("a").write(" ".join(seeds) + "\n")
        return real(*a, seeds=seeds, **kw)
    app.synthesize_mhqa = slow
    return main([str(x) for x in argv])


def test_sigkill_mid_mhqa_stage_then_resume_redoes_no_document(cli_run, tmp_path, capsys, monkeypatch):
    "SIGKILL while the multi-hop stage is between its chunks of 4 documents; the rerun synthesizes only the uncommitted documents, and the summary equals the uninterrupted run's."
    from test_rounds import Forked, cli
    import latent_lm.source2synth.app as app
    d, ref = cli_run
    argv = ["source2synth", "run", "--config", TINY, "--run_dir", d.parent / "killed", *SHRINK, "--json"]
    p = Forked(tmp_path / "err.txt", _slow_mhqa_run, argv, tmp_path / "log.txt")
    store, t0 = d.parent / "killed" / "mhqa.jsonl", time.time()
    committed = lambda: json.loads(store.with_name("mhqa.jsonl.store.json").read_text())["records"] if store.with_name("mhqa.jsonl.store.json").exists() else 0
    while p.poll() is None and time.time() - t0 < 120 and committed() < 4: time.sleep(0.02)      # the sidecar is the commit point
    assert p.poll() is None, "the run ended before it could be killed: " + (tmp_path / "err.txt").read_text()[-2000:]
    p.send_signal(signal.SIGKILL); p.wait()
    side = json.loads(store.with_name("mhqa.jsonl.store.json").read_text())
    done = [json.loads(line)["key"] for line in store.read_bytes()[:side["bytes"]].splitlines()]
    assert len(done) == 4 and len((tmp_path / "log.txt").read_text().split()) >= 4
    real, calls = app.synthesize_mhqa, []
    monkeypatch.setattr(app, "synthesize_mhqa", lambda *a, seeds=None, **kw: calls.extend(seeds) or real(*a, seeds=seeds, **kw))
    rc, out, err = cli(argv, capsys)
    assert rc == 0, err[-2000:]
    people = [x["id"] for x in generated_documents(6, seed=0) if x["kind"] == "person"]
    assert sorted(c for c in calls if c in people) == sorted(set(people) - set(done))   # the committed documents are not redone
    strip = lambda s: {k: v for k, v in s.items() if k not in ("run_dir", "figures")}
    assert strip(json.loads(out)) == strip(ref)


def _careless(prompt, **kw):
    "A scripted LM for the paper's multi-hop prompts that answers every second first-step prompt with junk."
    if prompt.startswith("Identify"):
        name, city = re.search(r"Text: (\w+ \w+)", prompt)[1], re.search(r"born in (\w+)", prompt)
        return f"Question: Where was {name} born?\nEntity: {city[1]}" if city and sum(map(ord, name)) % 2 else "Kotown is nice."
    if prompt.startswith("Come up"): return "Which country is " + re.search(r"word:\n(\w+)", prompt)[1] + " in?"
    if prompt.startswith("Answer Q1"):
        q1, q2, ent = re.search(r"Q1: Where was (.+) born\?", prompt)[1], re.search(r"Q2: (.+)", prompt)[1], re.search(r"A1: (.+)", prompt)[1]
        return "'Q' = \"" + q2.replace(ent, f"the city where {q1} was born") + "\""
    return "Question: Where was " + re.search(r"Text: (\w+ \w+)", prompt)[1] + " born?"


@pytest.mark.parametrize("fn", [_careless, lambda p: "<|junk|>", lambda p: ""], ids=["careless", "junk", "empty"])
def test_mhqa_stage_counts_malformed_generations_and_fails_clearly_only_if_none_survive(tmp_path, monkeypatch, fn):
    import latent_lm.source2synth.app as app
    from latent_lm.core import open_run_dir
    monkeypatch.setattr(app.S2SRun, "generator", lambda self, path: FunctionGenerator(fn))
    cfg = app.load_config({**SMALL, "run_dir": str(tmp_path / "run"), "source": {"n_people": 12},
                           "synth": {"tasks": ["mhqa"], "generator": "scripted", "noise": 0.0, "per_document": 1}})
    r = app.S2SRun(cfg)
    with open_run_dir(r.dir, cfg.fingerprint()):
        if fn is not _careless:
            with pytest.raises(LatentLMError, match=r"task 'mhqa' kept 0 entries.*no_q1 12.*synth.generator"): r.synthesize()
            return
        r.synthesize()
    st = Counter(x["status"] for x in r.tasks["mhqa"]["records"])
    assert st["ok"] >= 2 and st["no_q1"] >= 1 and st["no_link"] == 4 and sum(st.values()) == 16     # the city documents link nowhere
    assert all(kb_answer(x["question"], r.docs) == x["answer"] for x in r.tasks["mhqa"]["items"])
