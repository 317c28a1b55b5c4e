"""The sources layer: the safe SQL runner refuses or stops every forbidden query with a counted reason and never changes
the source; users' tables and documents load from CSV, SQLite, folders and HF datasets; generated defaults are deterministic."""
import hashlib, json, sqlite3, time
from collections import Counter
from pathlib import Path

import pytest

from latent_lm.core import LatentLMError
from latent_lm.sources import (Table, SQLRunner, run_sql, check_query, split_statements, same_result, result_key, load_tables,
                               load_documents, generated_tables, generated_documents, REASONS)

T = Table("pets_0", "pets", ["name", "kind", "age"], ["TEXT", "TEXT", "INTEGER"], [("Rex", "dog", 3), ("Tom", "cat", 5), ("Ivy", "cat", 2)])
LOOP = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
FORBIDDEN = {
    "INSERT INTO pets VALUES ('a', 'b', 1)": "writes", "UPDATE pets SET age = 0": "writes", "DELETE FROM pets": "writes",
    "DROP TABLE pets": "writes", "CREATE TABLE x (a)": "writes", "ALTER TABLE pets ADD COLUMN y": "writes",
    "REPLACE INTO pets VALUES ('a', 'b', 1)": "writes", "WITH x AS (SELECT 1) DELETE FROM pets": "writes",
    "WITH x AS (SELECT 1) INSERT INTO pets SELECT 'a', 'b', 1 FROM x": "writes",
    "ATTACH DATABASE 'other.db' AS o": "attach", "attach ':memory:' as o": "attach", "DETACH o": "attach",
    "PRAGMA writable_schema = 1": "pragma", "PRAGMA table_info(pets)": "pragma",
    "SELECT 1; DROP TABLE pets": "several_statements", "SELECT 1; SELECT 2;": "several_statements",
    "SELECT name FROM pets; -- ok\nDELETE FROM pets": "several_statements",
    "VACUUM": "writes", "BEGIN": "writes", "EXPLAIN SELECT 1": "not_select", "": "empty", "  ;  ": "empty", "-- nothing": "empty",
    LOOP: "timeout", "SELECT * FROM pets a, pets b, pets c WHERE nope = 1": "error", "SELECT FROM": "error",
    "SELECT load_extension('x')": "error",
}


@pytest.mark.parametrize("sql,reason", list(FORBIDDEN.items()), ids=list(FORBIDDEN))
def test_forbidden_queries_are_refused_with_a_reason(sql, reason):
    r = SQLRunner(T, time_limit=0.2)
    res = r.run(sql)
    assert not res.ok and res.reason == reason, (sql, res)
    assert res.reason in REASONS
    assert r.run("SELECT name, kind, age FROM pets").rows == [list(x) for x in T.rows]      # nothing changed


def test_select_runs_and_long_query_stops_in_time():
    r = SQLRunner(T, time_limit=0.3)
    assert r.run("SELECT COUNT(*) FROM pets WHERE kind = 'cat';").rows == [[2]]
    assert r.run("SELECT 'a;b' AS s -- trailing; comment").rows == [["a;b"]]
    t0 = time.monotonic(); res = r.run(LOOP)
    assert res.reason == "timeout" and time.monotonic() - t0 < 2.0
    assert r.run("SELECT MAX(age) FROM pets").rows == [[5]]                   # the runner is usable after a timeout
    assert SQLRunner(T, max_rows=2).run("SELECT * FROM pets").reason == "too_many_rows"
    assert run_sql(T, "SELECT name FROM pets ORDER BY age LIMIT 1").rows == [["Ivy"]]


def test_reasons_can_be_counted_and_non_strings_do_not_crash():
    r = SQLRunner(T, time_limit=0.1)
    tally = Counter(r.run(q).reason for q in [None, 3, "SELECT 1", "DROP TABLE pets", "PRAGMA x", LOOP])
    assert tally == Counter({"empty": 2, None: 1, "writes": 1, "pragma": 1, "timeout": 1})


def test_split_statements_respects_literals_and_comments():
    assert split_statements("SELECT ';' ; SELECT \"a;b\"") == ["SELECT ';'", 'SELECT "a;b"']
    assert split_statements("SELECT 1 /* ; */ -- ;\n") == ["SELECT 1"]
    assert check_query("SELECT 'x'';DROP TABLE t'") is None                  # an escaped quote keeps the literal open


def test_sqlite_file_is_only_read(tmp_path):
    db = tmp_path / "shop.sqlite"
    c = sqlite3.connect(db); c.execute("CREATE TABLE items (name TEXT, price REAL)"); c.executemany("INSERT INTO items VALUES (?, ?)", [("a", 1.5), ("b", 2)]); c.commit(); c.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    r = SQLRunner(db)
    for q in ["DELETE FROM items", "DROP TABLE items", "ATTACH DATABASE ':memory:' AS x", "PRAGMA journal_mode = WAL"]:
        assert not r.run(q).ok
    assert r.run("SELECT SUM(price) FROM items").rows == [[3.5]]
    r.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    with pytest.raises(LatentLMError, match="not a readable SQLite"):
        (tmp_path / "junk.sqlite").write_text("hello"); SQLRunner(tmp_path / "junk.sqlite")


def test_same_result():
    assert same_result([[1, "a"], [2.0, "b"]], [[2, "b"], [1, "a"]])
    assert not same_result([[1]], [[1], [1]])
    assert result_key([[0.1 + 0.2]]) == result_key([[0.3]])
    assert not same_result(None, [[1]])


def test_load_tables_from_csv_folder_sqlite_and_dataset(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.csv").write_text("Name,Score\nx,1\ny,2\n")
    (tmp_path / "t" / "b.csv").write_text("city,pop\np,1.5\nq,\n")
    ts = load_tables(tmp_path / "t")
    assert [(t.id, t.types) for t in ts] == [("a", ["TEXT", "INTEGER"]), ("b", ["TEXT", "REAL"])]
    assert ts[1].rows[1] == ("q", None)
    db = tmp_path / "x.db"
    c = sqlite3.connect(db); c.execute("CREATE TABLE u (k TEXT, v INTEGER)"); c.execute("INSERT INTO u VALUES ('z', 7)"); c.commit(); c.close()
    (u,) = load_tables(db)
    assert (u.name, u.rows) == ("u", [("z", 7)])
    import datasets
    ds = datasets.Dataset.from_list([{"player name": "a", "goals": 3}, {"player name": "b", "goals": 4}])
    (d,) = load_tables(ds, name="goals")
    assert d.columns == ["player_name", "goals"] and SQLRunner(d).run("SELECT SUM(goals) FROM goals").rows == [[7]]
    ds.save_to_disk(str(tmp_path / "saved"))
    assert load_tables(tmp_path / "saved")[0].rows == d.rows


def test_bad_table_sources(tmp_path):
    with pytest.raises(LatentLMError, match="not found"): load_tables(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LatentLMError, match="no .csv"): load_tables(tmp_path / "empty")
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(LatentLMError, match="no CSV rows"): load_tables(tmp_path / "h.csv")
    with pytest.raises(LatentLMError, match="identifier"): Table("x", "x y", ["a"], ["TEXT"], [])


def test_load_documents(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.txt").write_text("Hello world.")
    (tmp_path / "d" / "more.jsonl").write_text(json.dumps({"id": "a", "text": "A"}) + "\n\n" + json.dumps({"title": "B", "text": "B"}) + "\n")
    docs = load_documents(tmp_path / "d")
    assert [(d["id"], d["text"]) for d in docs] == [("a", "A"), ("more_1", "B"), ("one", "Hello world.")]
    (tmp_path / "bad.jsonl").write_text('{"body": 1}\n')
    with pytest.raises(LatentLMError, match="text_field"): load_documents(tmp_path / "bad.jsonl")
    assert load_documents(tmp_path / "bad.jsonl", text_field="body")[0]["text"] == "1"
    import datasets
    assert load_documents(datasets.Dataset.from_list([{"text": "x"}]))[0]["text"] == "x"
    with pytest.raises(LatentLMError, match="not found"): load_documents(tmp_path / "missing")


def test_generated_sources_are_deterministic_and_grounded():
    a, b = generated_tables(12, seed=4), generated_tables(12, seed=5)
    assert a == generated_tables(12, seed=4) and a != b
    assert len({t.id for t in a + b}) == 24
    for t in a: assert SQLRunner(t).run(f"SELECT COUNT(*) FROM {t.name}").rows == [[len(t.rows)]]
    docs = generated_documents(10, seed=1)
    ids = {d["id"] for d in docs}
    for d in docs:
        assert all(l in ids for l in d["links"])
        for rel, v in d["facts"].items(): assert str(v) in d["text"]
