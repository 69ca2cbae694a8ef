"""`neurocat analyze …` on a catalogue written by `neurocat ingest`, and the README's three questions."""
from typer.testing import CliRunner

import catalog
from ingest.cli import app

runner = CliRunner()


def test_analyses_rerun_on_an_existing_catalogue(tmp_path, planted_folder):
    cat_path = str(tmp_path / "c.duckdb")
    r = runner.invoke(app, ["ingest", "--model", "tests.planted:planted", "--layers", "0", "--image-size", "32",
                            "--workers", "0", "-q", "--data", str(planted_folder), "--catalog", cat_path, "--top-n", "12",
                            "--name", "p"])
    assert r.exit_code == 0, r.output
    with catalog.open(cat_path) as cat:
        before = cat.df("SELECT * FROM neurons ORDER BY unit").drop(columns=["nf_png"])
    for args in (["faceted"], ["similarity", "--full"], ["hierarchy"], ["filter-tree", "--label", "bars", "-q"]):
        r = runner.invoke(app, ["analyze", *args, "--model", "p", "--catalog", cat_path])
        assert r.exit_code == 0, r.output
    with catalog.open(cat_path) as cat:
        after = cat.df("SELECT * FROM neurons ORDER BY unit").drop(columns=["nf_png"])
        assert before.equals(after)  # re-running faceted replaces its indexes, keeps α and γ
        assert cat.query("SELECT count(*) FROM similarity_pairs").column(0)[0].as_py() == 2  # 2 live, both ways
        nodes = cat.df("SELECT * FROM filter_tree_nodes WHERE label = 'bars'")
        assert (nodes.image_id.notna()).sum() == 10
        # the README's three questions, one query each
        assert cat.df("SELECT layer, count(*) AS n FROM neurons WHERE faceted = 'single-faceted' "
                      "GROUP BY layer ORDER BY n DESC").shape[0] == 1
        assert cat.df("SELECT unit_b, pearson FROM similarity_pairs WHERE model = 'p' AND layer = '0' "
                      "AND unit_a = 0 ORDER BY rank").unit_b.tolist() == [1]
        assert cat.df("SELECT other_label FROM nearest_classes WHERE model = 'p' AND label = 'red' "
                      "ORDER BY rank").shape[0] == 2
    r = runner.invoke(app, ["analyze", "faceted", "--model", "nope", "--catalog", cat_path])
    assert r.exit_code == 2 and "p on planted" in r.output


def test_ica_components_for_every_live_neuron(tmp_path, planted_folder):
    cat_path = str(tmp_path / "c.duckdb")
    r = runner.invoke(app, ["ingest", "--model", "tests.planted:planted", "--layers", "0", "--image-size", "32",
                            "--workers", "0", "-q", "--data", str(planted_folder), "--catalog", cat_path])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["analyze", "ica", "--model", "tests.planted:planted", "--catalog", cat_path, "-q",
                            "--components", "4"])
    assert r.exit_code == 0, r.output
    with catalog.open(cat_path) as cat:
        rows = cat.df("SELECT unit, mode, count(*) AS n FROM ica_components GROUP BY 1, 2 ORDER BY 1, 2")
        assert rows.unit.unique().tolist() == [0, 1]        # the dead neuron has none
        assert set(rows["mode"]) == {"gray", "red", "green", "blue"} and set(rows.n) == {4}
        png = cat.query("SELECT png FROM ica_components LIMIT 1").column(0)[0].as_py()
        assert png.startswith(b"\x89PNG")
