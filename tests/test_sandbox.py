"""User SQL runs in a sandbox: it reads the catalogue and nothing else.

Every attack goes through the real CLI against a real ingested catalogue, and must fail with a
one-line error (exit 2), leave every file byte-identical and create none.
"""
import hashlib
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import catalog
from catalog.reading import CatalogLookupError
from ingest.cli import app
from ingest.data import open_images
from ingest.models import load_model
from ingest.pipeline import IngestOptions, ingest
from tests.planted import RED


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from tests.conftest import planted_images

    tmp = tmp_path_factory.mktemp("sandbox")
    images = open_images(planted_images(tmp / "data"))
    model = load_model("tests.planted:planted")  # by name, so `visualize` can load it again
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu")
    for name in ("planted", "twin"):
        ingest(model, images, tmp / "c.duckdb", name, ["0"], opts)
    return tmp / "c.duckdb"


@pytest.fixture
def cat(ingested, tmp_path, monkeypatch):
    """A fresh copy per test, with a second catalogue beside it; relative paths land in tmp_path."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ingested, work / "cat.duckdb")
    shutil.copy(ingested, work / "other.duckdb")
    monkeypatch.chdir(work)
    return work / "cat.duckdb"


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def neurocat(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_refused(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    for secret in ("root:", "PRETTY_NAME", "ID="):  # nothing of /etc leaked
        assert secret not in result.output


DISABLED = "disabled by configuration"
LOCKED = "configuration has been locked"
QUERY_ATTACKS = {
    "copy over the catalogue": ("COPY (SELECT 'x') TO 'cat.duckdb' (FORMAT csv)", "cat.duckdb"),
    "copy over it by full path": ("COPY (SELECT 'x') TO '{cat}' (FORMAT csv)", "Cannot COPY"),
    "copy to another file": ("COPY (SELECT * FROM units) TO 'stolen.csv' (FORMAT csv)", DISABLED),
    "attach read-write and drop": ("ATTACH '{other}' AS v (READ_WRITE); DROP TABLE v.top_images", DISABLED),
    "attach read-only": ("ATTACH '{other}' AS v (READ_ONLY); SELECT count(*) FROM v.units", DISABLED),
    "read_text": ("SELECT * FROM read_text('/etc/os-release')", DISABLED),
    "read_csv": ("SELECT * FROM read_csv('/etc/passwd', sep = ':')", DISABLED),
    "glob": ("SELECT * FROM glob('/etc/*.conf')", DISABLED),
    "install": ("INSTALL httpfs", DISABLED),
    "load": ("LOAD httpfs", "disabled"),
    "turn external access back on": ("SET enable_external_access = true; SELECT * FROM read_text('/etc/hostname')",
                                     LOCKED),
    "unlock": ("SET lock_configuration = false", LOCKED),
    "autoload": ("SET autoinstall_known_extensions = true", LOCKED),
    "pragma profiling to a file": ("PRAGMA enable_profiling = 'json'; PRAGMA profiling_output = 'profile.json'; "
                                   "SELECT count(*) FROM units", LOCKED),
    "export": ("EXPORT DATABASE 'dump'", DISABLED),
    "drop": ("DROP TABLE units", "read-only"),
    "delete": ("DELETE FROM top_images", "read-only"),
    "create": ("CREATE TABLE notes AS SELECT 1 AS x", "read-only"),
}


@pytest.mark.parametrize("attack", list(QUERY_ATTACKS))
def test_query_attack_fails_and_touches_nothing(cat, attack):
    sql, needle = QUERY_ATTACKS[attack]
    before = snapshot(cat.parent)
    result = neurocat("query", sql.format(cat=cat, other=cat.parent / "other.duckdb"), "--catalog", cat)
    assert_refused(result, needle)
    assert snapshot(cat.parent) == before


WHERE_ATTACKS = {
    "a second statement": ("1=1; DROP TABLE units", ";"),
    "statements after a closed parenthesis": ("1=1); COPY (SELECT 1) TO 'x.csv'; SELECT (1", ";"),
    "a file in a subquery": ("unit IN (SELECT 1 FROM read_text('/etc/hostname'))", DISABLED),
    "a file's contents in a scalar": ("length((SELECT string_agg(content) FROM read_text('/etc/passwd'))) > 0",
                                      DISABLED),
    "glob": ("unit IN (SELECT length(file) FROM glob('/etc/*'))", DISABLED),
    "another catalogue": ("unit IN (SELECT length(content) FROM read_blob('other.duckdb'))", DISABLED),
}


@pytest.mark.parametrize("command", ["gradcam", "visualize"])
@pytest.mark.parametrize("attack", list(WHERE_ATTACKS))
def test_where_attack_fails_and_touches_nothing(cat, command, attack):
    """Both commands open the catalogue for writing; their --where still runs sandboxed."""
    where, needle = WHERE_ATTACKS[attack]
    before = snapshot(cat.parent)
    result = neurocat(command, "--model", "planted", "--layer", "0", "--where", where, "--catalog", cat,
                      "--device", "cpu", "-q", *(["--steps", "1", "--size", "16"] if command == "visualize" else []))
    assert_refused(result, "--where", needle)
    assert snapshot(cat.parent) == before


def test_normal_queries_views_and_compare_still_work(cat):
    before = snapshot(cat.parent)
    result = neurocat("query", "SELECT unit FROM neurons WHERE model = 'planted' AND alpha > 0.5", "--catalog", cat,
                      "-f", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["unit", str(RED)]
    for view in catalog.view_files():
        result = neurocat("query", f"SELECT count(*) AS n FROM {view}", "--catalog", cat, "-f", "json")
        assert result.exit_code == 0, (view, result.output)
    result = neurocat("compare", "planted", "twin", "--catalog", cat, "-f", "json")
    assert result.exit_code == 0, result.output
    assert '"planted -> twin"' in result.stdout
    assert snapshot(cat.parent) == before


def test_a_normal_where_selects_and_writes(cat):
    result = neurocat("gradcam", "--model", "planted", "--layer", "0", "--where", "alpha > 0.5", "--top", "2",
                      "--catalog", cat, "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    with catalog.open(cat, read_only=True) as c:
        assert c.rows("SELECT DISTINCT unit FROM visualizations WHERE model = 'planted'") == [(RED,)]


def test_read_only_opens_are_sandboxed_and_writing_ones_are_not(cat):
    with catalog.open(cat, read_only=True) as c:
        assert c.sandboxed
        assert c.rows("SELECT current_setting('enable_external_access'), current_setting('lock_configuration'), "
                      "current_setting('autoload_known_extensions'), "
                      "current_setting('autoinstall_known_extensions')") == [(False, True, False, False)]
        for view in catalog.view_files():  # the views read only tables
            c.query(f"SELECT * FROM {view}")
        ds = c.run("planted")["dataset"]
        assert c.select_units("planted", ds, "0", where="alpha > 0.5") == [RED]
        assert c.top_images("planted", ds, "0").num_rows > 0
    with catalog.open(cat) as c:
        assert not c.sandboxed
    with pytest.raises(ValueError, match="read-only"):
        catalog.open(cat, sandbox=True)


def test_where_in_a_writable_catalogue_gives_the_same_rows(cat):
    with catalog.open(cat, read_only=True) as c:
        ds = c.run("planted")["dataset"]
        want = c.neurons("planted", ds, where="NOT dead AND gamma >= 0", columns=["layer", "unit", "gamma"])
        units = c.select_units("planted", ds, "0", [0, 2], where="a_max > 0")
    with catalog.open(cat) as c:
        assert c.neurons("planted", ds, where="NOT dead AND gamma >= 0",
                         columns=["layer", "unit", "gamma"]).to_pylist() == want.to_pylist()
        assert c.select_units("planted", ds, "0", [0, 2], where="a_max > 0") == units
        assert c.neurons("planted", ds, where="model = 'twin'").num_rows == 0  # keyed by run, still
        with pytest.raises(CatalogLookupError, match="disabled by configuration"):
            c.neurons("planted", ds, where="unit IN (SELECT 1 FROM read_text('/etc/hostname'))")
        with pytest.raises(CatalogLookupError, match=";"):
            c.select_units("planted", ds, "0", where="1=1; DROP TABLE units")
