"""Every view of queries/ runs unchanged on DuckDB and SQLite and returns the same rows."""
import math
import sqlite3

import pytest
import torch

import catalog
from catalog.catalog import create_views, view_files
from catalog.compare import match_activations
from ingest.data import open_images
from ingest.ablation import ablate
from ingest.analyze import analyze_filter_tree
from ingest.pipeline import ingest
from ingest.probe import probe
from ingest.invariance import analyze_invariance


def to_sqlite(cat, path):
    con = sqlite3.connect(path)
    for table in cat.tables():
        t = cat.query(f"SELECT * FROM {table}")
        cols = ", ".join(f'"{c}"' for c in t.column_names)
        con.execute(f"CREATE TABLE {table} ({cols})")
        rows = [tuple(r.values()) for r in t.to_pylist()]
        con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(t.column_names))})", rows)
    create_views(con.execute, "CREATE VIEW", more_indexes=cat.index_names())
    return con


def normalise(rows):
    def cell(v):
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 9)
        return v
    return sorted((tuple(cell(v) for v in r) for r in rows), key=repr)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from tests.conftest import planted_images
    from ingest.models import LoadedModel
    from ingest.pipeline import IngestOptions
    from tests.planted import planted

    tmp = tmp_path_factory.mktemp("views")
    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu")
    images = open_images(planted_images(tmp / "data"))
    ingest(model, images, tmp / "c.duckdb", "planted", ["0"], opts)
    ingest(model, images, tmp / "c.duckdb", "other", ["0"], opts)
    cat = catalog.open(tmp / "c.duckdb")
    analyze_filter_tree(cat, "planted", "red", network=model, progress=False)
    # A classifier whose layer "0" is the planted conv, so the ablation views have rows.
    classifier = LoadedModel(torch.nn.Sequential(model.module[0], torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten()),
                             "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    ablate(cat, "planted", "0", split=0.5, device="cpu", network=classifier, progress=False)
    probe(cat, "planted", [images.absolute(0), images.absolute(len(images) - 1)], device="cpu", network=model)
    analyze_invariance(cat, "planted", ["orientation", "symmetry"], network=model, device="cpu", progress=False)
    match_activations(cat, "planted", "other")  # the same network: every live unit has a partner at r = 1
    yield cat, to_sqlite(cat, str(tmp / "c.db"))
    cat.close()


@pytest.mark.parametrize("view", sorted(view_files()))
def test_view_same_rows_on_duckdb_and_sqlite(both, view):
    cat, lite = both
    duck_rows = cat.rows(f"SELECT * FROM {view}")
    lite_rows = lite.execute(f"SELECT * FROM {view}").fetchall()
    assert len(duck_rows) > 0
    assert normalise(duck_rows) == normalise(lite_rows)


def test_layer_bins_count_every_live_neuron_once(both):
    cat, _ = both
    rows = cat.df("SELECT \"index\", sum(n) AS n, sum(fraction) AS f FROM layer_selectivity_bins "
                  "WHERE model = 'planted' GROUP BY 1 ORDER BY 1")
    assert rows.n.tolist() == [2, 2]  # two live neurons (red, edge), the dead one in no bin
    assert rows.f.tolist() == pytest.approx([1.0, 1.0])


def test_mission_query_as_written(both):
    cat, _ = both
    rows = cat.df("SELECT model, layer, unit FROM neurons WHERE layer = '0' AND gamma > 0.9 AND alpha > 0.5")
    assert sorted(rows.unit.tolist()) == [0, 0]  # the red detector, in both models
    # With the evidence (docs/science.md §22): γ beyond the class prior, α's whole interval above 0.5.
    sure = cat.df("SELECT model, layer, unit FROM neurons WHERE layer = '0' AND gamma > 0.9 AND gamma_p < 0.01 "
                  "AND alpha_lo > 0.5")
    assert sorted(sure.unit.tolist()) == [0, 0]
    listed = cat.df("SELECT model, unit FROM significant_class_neurons WHERE layer = '0' ORDER BY model")
    assert listed.values.tolist() == [["other", 0], ["planted", 0]]
