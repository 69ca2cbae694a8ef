"""Tables and columns a user adds to a catalogue: publish copies them (quoted), ingest leaves them be.

A table `"my notes"` with a column `a"b`, a column `a"b` added to `units`, and `extra.units` in a
schema of the user's own, in a real ingested catalogue; then a real publish, a real Datasette, a
real re-ingest.
"""
import json
import sqlite3
import urllib.request

import duckdb
import pytest
from datasette.utils import tilde_encode
from typer.testing import CliRunner

import catalog
from catalog.publish import metadata
from catalog.site import prepare, running
from ingest.cli import app
from ingest.data import open_images
from ingest.pipeline import ingest

NOTES = [('x"y', 1, ["a", "b"], 0.5), ("hello", None, None, None)]
USER_SQL = [
    'CREATE TABLE "my notes" ("a""b" VARCHAR, n INTEGER, tags VARCHAR[], "select" DOUBLE)',
    "CREATE SCHEMA extra",
    "CREATE TABLE extra.units (model VARCHAR, note VARCHAR)",  # same name as ours, other columns
    "INSERT INTO extra.units VALUES ('planted', 'mine')",
    'ALTER TABLE units ADD COLUMN "a""b" VARCHAR',
    "UPDATE units SET \"a\"\"b\" = 'kept' WHERE unit = 0",
    "CREATE TABLE sqlite_stats9 (x INTEGER)",  # a name SQLite reserves
]


def user_sql(path, *statements, params=None):
    con = duckdb.connect(str(path))
    try:
        for s in statements:
            con.execute(s)
        if params:
            con.executemany('INSERT INTO "my notes" VALUES (?, ?, ?, ?)', params)
    finally:
        con.close()


@pytest.fixture
def run(tmp_path, planted_folder, planted_model, fast_options):
    path = tmp_path / "c.duckdb"

    def again():
        ingest(planted_model, open_images(planted_folder), path, "planted", ["0"], fast_options)

    again()
    user_sql(path, *USER_SQL, params=NOTES)
    return path, again


def test_publish_copies_user_tables_quoted_and_skips_other_schemas(run):
    path, _ = run
    result = CliRunner().invoke(app, ["publish", "--catalog", str(path)])
    assert result.exit_code == 0, result.output
    assert "sqlite_stats9" in result.stderr  # left out, and said so
    lite = sqlite3.connect(path.with_suffix(".db"))
    cols = [r[1] for r in lite.execute("PRAGMA table_info(\"my notes\")")]
    assert cols == ['a"b', "n", "tags", "select"]
    rows = lite.execute('SELECT "a""b", n, tags, "select" FROM "my notes" ORDER BY n NULLS LAST').fetchall()
    assert rows == [('x"y', 1, '["a", "b"]', 0.5), ("hello", None, None, None)]
    with catalog.open(path, read_only=True) as cat:
        n_units = cat.rows("SELECT count(*) FROM units")[0][0]
        units_cols = cat._columns("units")
        assert '"my notes"' not in cat.tables() and "my notes" in cat.tables()
        assert cat.tables().count("units") == 1  # not extra.units
    assert lite.execute("SELECT count(*) FROM units").fetchone()[0] == n_units
    assert [r[1] for r in lite.execute("PRAGMA table_info(units)")] == units_cols  # ours, plus a"b
    assert lite.execute("""SELECT "a""b" FROM units WHERE unit = 0""").fetchone() == ("kept",)
    assert not lite.execute("SELECT name FROM sqlite_master WHERE name LIKE '%extra%' OR name LIKE 'sqlite_stats9'"
                            ).fetchall()
    assert lite.execute("SELECT count(*) FROM neurons").fetchone()[0] == n_units  # the views still build


def test_datasette_serves_user_tables_with_valid_metadata(run):
    path, _ = run
    db, meta, _ = prepare(path)
    assert json.loads(meta.read_text()) == metadata(db.stem)
    with running(db, meta, timeout=60) as base:
        def get(url):
            with urllib.request.urlopen(base + url, timeout=10) as r:
                assert r.status == 200
                return json.loads(r.read())

        rows = get(f"/{db.stem}/{tilde_encode('my notes')}.json?_shape=array")
        assert sorted(r['a"b'] for r in rows) == ["hello", 'x"y']
        assert get("/-/metadata.json")["databases"][db.stem]["tables"]["units"]["columns"]["a_max"]
        assert get(f"/{db.stem}/neurons.json?_shape=array&unit=0")[0]["unit"] == 0
        tables = {t["name"] for t in get(f"/{db.stem}.json")["tables"]}
        assert {"my notes", "units"} <= tables


def test_reingest_works_and_leaves_user_tables_intact(run):
    path, again = run
    again()  # binds ours, not extra.units, and inserts no value for a"b
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert sorted(con.execute('SELECT * FROM "my notes"').fetchall(), key=str) == sorted(
            [tuple(r) for r in NOTES], key=str)
        assert con.execute("SELECT * FROM extra.units").fetchall() == [("planted", "mine")]
        assert con.execute("""SELECT count(*), count("a""b") FROM units""").fetchone()[1] == 0  # rows replaced
        assert con.execute("SELECT count(*) FROM sqlite_stats9").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM neurons").fetchone()[0] == 3
    finally:
        con.close()
    result = CliRunner().invoke(app, ["publish", "--catalog", str(path)])
    assert result.exit_code == 0, result.output
