"""A catalogue records its schema version; an older file asks for `neurocat migrate`, which brings it
up to date; a newer one asks for an upgrade. CLI errors are one line with exit code 2."""
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

import catalog
import catalog.schema_version
from catalog import SCHEMA_VERSION, SchemaVersionError
from catalog.site import prepare
from ingest.data import open_images
from ingest.pipeline import ingest

NEUROCAT = Path(sys.executable).with_name("neurocat")
COUNT = "SELECT count(*) AS n, count(alpha_method) AS with_method FROM neurons"


@pytest.fixture
def ingested(tmp_path, planted_folder, planted_model, fast_options):
    path = tmp_path / "c.duckdb"
    ingest(planted_model, open_images(planted_folder), path, "planted", ["0"], fast_options)
    return path


def neurocat(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(NEUROCAT), *args], capture_output=True, text=True, timeout=120)


def sql(path: Path, *statements: str) -> None:
    con = duckdb.connect(str(path))
    try:
        for s in statements:
            con.execute(s)
    finally:
        con.close()


def rows(path: Path, query: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def tables(path: Path) -> set[str]:
    return {r[0] for r in rows(path, "SELECT table_name FROM information_schema.tables")}


def assert_one_line_exit_2(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_new_catalogue_is_stamped_once(tmp_path):
    path = tmp_path / "new.duckdb"
    for _ in range(2):  # reopening for writing keeps the one row
        catalog.open(path).close()
    assert rows(path, "SELECT * FROM catalog_info") == [
        (SCHEMA_VERSION, catalog.schema_version.package_version(), None)]
    catalog.open(path, read_only=True).close()


def test_unversioned_catalogue_asks_for_migrate_which_brings_it_up_to_date(ingested):
    # A file of the code before versions: no catalog_info, a table and a column missing, an older view.
    sql(ingested, "DROP TABLE catalog_info", "DROP TABLE ablation", "ALTER TABLE units DROP COLUMN alpha_method",
        "CREATE OR REPLACE VIEW neurons AS SELECT model, dataset, layer, unit FROM units")
    for read_only in (True, False):
        with pytest.raises(SchemaVersionError) as err:
            catalog.open(ingested, read_only=read_only)
        message = str(err.value)
        assert "\n" not in message and str(ingested) in message and "no schema version" in message
        assert f"reads version {SCHEMA_VERSION}" in message
        assert f"`neurocat migrate {ingested}`" in message and "re-ingest" in message
    assert "ablation" not in tables(ingested)  # opening for writing refused before changing anything

    assert_one_line_exit_2(neurocat("query", COUNT, "--catalog", str(ingested)),
                           str(ingested), f"neurocat migrate {ingested}")
    with pytest.raises(SchemaVersionError):  # publish and serve check before building the site
        prepare(ingested)
    assert not ingested.with_suffix(".db").exists()

    done = neurocat("migrate", str(ingested))
    assert done.returncode == 0, done.stderr
    changes = done.stdout.splitlines()
    assert {"added table catalog_info", "added table ablation", "added column units.alpha_method",
            f"schema version 0 -> {SCHEMA_VERSION}", "views re-created"} == set(changes)
    assert rows(ingested, "SELECT schema_version, migrated_from FROM catalog_info") == [(SCHEMA_VERSION, 0)]

    result = neurocat("query", COUNT, "--catalog", str(ingested), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 3, "with_method": 0}]  # today's view; old rows NULL in the new column
    with catalog.open(ingested) as cat:  # writable again: an analysis can fill the new table
        assert cat.query("SELECT count(*) FROM ablation").column(0)[0].as_py() == 0
        assert cat.query("SELECT count(*) FROM top_images").column(0)[0].as_py() > 0  # the data survived

    again = neurocat("migrate", str(ingested))
    assert again.returncode == 0 and f"already at schema version {SCHEMA_VERSION}" in again.stdout


def test_a_stamped_older_version_migrates_when_the_code_moves_on(tmp_path, monkeypatch):
    path = tmp_path / "c.duckdb"
    catalog.open(path).close()
    monkeypatch.setattr(catalog.schema_version, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(SchemaVersionError, match=f"has schema version {SCHEMA_VERSION};"):
        catalog.open(path, read_only=True)
    assert catalog.migrate(path) == [f"schema version {SCHEMA_VERSION} -> {SCHEMA_VERSION + 1}", "views re-created"]
    assert rows(path, "SELECT schema_version, migrated_from FROM catalog_info") == [
        (SCHEMA_VERSION + 1, SCHEMA_VERSION)]
    catalog.open(path, read_only=True).close()
    assert catalog.migrate(path) == []


def test_a_newer_catalogue_asks_for_an_upgrade(ingested):
    sql(ingested, f"UPDATE catalog_info SET schema_version = {SCHEMA_VERSION + 1}")
    for read_only in (True, False):
        with pytest.raises(SchemaVersionError, match="upgrade neuron-catalog"):
            catalog.open(ingested, read_only=read_only)
    with pytest.raises(SchemaVersionError, match="upgrade neuron-catalog"):
        catalog.migrate(ingested)
    assert_one_line_exit_2(neurocat("query", "SELECT 1", "--catalog", str(ingested)), str(ingested),
                           f"schema version {SCHEMA_VERSION + 1}", "upgrade neuron-catalog")
    assert_one_line_exit_2(neurocat("migrate", str(ingested)), "upgrade neuron-catalog")
    assert rows(ingested, "SELECT schema_version FROM catalog_info") == [(SCHEMA_VERSION + 1,)]  # left alone


def test_migrate_a_missing_file_exits_2(tmp_path):
    assert_one_line_exit_2(neurocat("migrate", str(tmp_path / "nope.duckdb")), "no catalogue at")
