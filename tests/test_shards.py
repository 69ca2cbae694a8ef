"""Shards scanned apart and merged give the catalogue of a single run, duplicates and overlaps included."""
import pytest
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from tests.test_ingest_planted import tables

runner = CliRunner()
COMMON = ["--model", "tests.planted:planted", "--layers", "0", "--image-size", "32", "--workers", "0", "-q",
          "--top-n", "12", "--batch-size", "4"]


def invoke(*args):
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r


def catalogue(path):
    with catalog.open(path, read_only=True) as cat:
        out = tables(cat)
    out["datasets"] = out["datasets"].drop(columns=["root"])
    return out


@pytest.fixture
def single(tmp_path, planted_folder):
    path = tmp_path / "single.duckdb"
    invoke("ingest", "--data", str(planted_folder), "--catalog", str(path), *COMMON)
    return catalogue(path)


@pytest.mark.parametrize("shards", [["1/3", "2/3", "3/3"], ["1/3", "1/3", "2/3", "3/3", "1/2"]])
def test_merged_shards_equal_a_single_run(tmp_path, planted_folder, single, shards):
    parts = []
    for k, shard in enumerate(shards):
        part = tmp_path / f"part-{k}"
        invoke("ingest", "--data", str(planted_folder), "--shard", shard, "--out", str(part), *COMMON)
        parts.append(str(part))
    merged = tmp_path / "merged.duckdb"
    r = invoke("merge", *parts, "--catalog", str(merged), "-q")
    assert "on 30 images" in r.output
    got = catalogue(merged)
    assert got.keys() == single.keys()
    for name in single:
        assert got[name].equals(single[name]), name


def test_merge_refuses_shards_of_different_runs(tmp_path, planted_folder):
    a, b = tmp_path / "a", tmp_path / "b"
    invoke("ingest", "--data", str(planted_folder), "--shard", "1/2", "--out", str(a), *COMMON)
    invoke("ingest", "--data", str(planted_folder), "--shard", "2/2", "--out", str(b), *COMMON[:-2], "--top-n", "5")
    r = runner.invoke(app, ["merge", str(a), str(b), "--catalog", str(tmp_path / "c.duckdb")])
    assert r.exit_code == 2 and "different runs" in r.output
    r = runner.invoke(app, ["ingest", "--data", str(planted_folder), "--shard", "4/3", "--out", str(a), *COMMON])
    assert r.exit_code == 2
