"""The whole pipeline on a planted network, checked against hand-known answers and brute force."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import catalog
from ingest.data import ImageDataset, open_images
from ingest.pipeline import IngestOptions, ingest
from tests.planted import DEAD, EDGE, RED


@pytest.fixture
def planted_catalog(tmp_path, planted_folder, planted_model, fast_options):
    path = tmp_path / "cat.duckdb"
    ingest(planted_model, open_images(planted_folder), path, "planted", ["0"], fast_options)
    with catalog.open(path) as cat:
        yield cat


def neuron(cat, unit):
    return cat.df("SELECT * FROM neurons WHERE unit = ?", [unit]).iloc[0]


def test_red_detector_is_colour_and_class_selective(planted_catalog):
    red = neuron(planted_catalog, RED)
    assert red.gamma == 1.0 and red.gamma_m == 1
    # NF = red centre on gray: α = acos(1/3) / 90° = 0.784, hue = OPP angle of red (30°)
    assert red.alpha > 0.7
    assert red.hue == pytest.approx(30, abs=5)
    assert red.color_name == "red"
    top = planted_catalog.df("SELECT label FROM class_frequencies WHERE unit = ? AND frequency > 0", [RED])
    assert top.label.tolist() == ["red"]


def test_achromatic_edge_channel_has_low_alpha(planted_catalog):
    edge = neuron(planted_catalog, EDGE)
    assert edge.alpha < 0.1
    assert pd.isna(edge.color_name)
    top = planted_catalog.df("SELECT i.label FROM top_images t JOIN images i USING (dataset, image_id) "
                             "WHERE t.unit = ? AND t.rank < 10", [EDGE])
    assert set(top.label) == {"bars"}


def test_dead_neuron_has_null_indexes_and_no_nf(planted_catalog):
    dead = neuron(planted_catalog, DEAD)
    assert dead.dead
    assert dead.nf_png is None
    assert all(v is None or (isinstance(v, float) and math.isnan(v)) for v in (dead.alpha, dead.gamma, dead.curve_area))
    assert planted_catalog.df("SELECT unit FROM dead_neurons").unit.tolist() == [DEAD]


def test_top_n_equals_a_brute_force_sort(planted_catalog, planted_folder, planted_model):
    images = open_images(planted_folder)
    ds = ImageDataset(images, 32)
    x = torch.stack([ds[i][0] for i in range(len(ds))]).float() / 255
    with torch.no_grad():
        out = planted_model.module(x).flatten(2)
    acts = out.max(2).values  # (images, channels)
    rows = planted_catalog.df("SELECT unit, rank, image_id, activation FROM top_images ORDER BY unit, rank")
    for unit in range(3):
        expected = sorted(range(len(images)), key=lambda j: (-acts[j, unit].item(), j))
        got = rows[rows.unit == unit]
        assert got.image_id.tolist() == expected  # ties (the many exact zeros) go to the lower id
        assert got.activation.to_numpy() == pytest.approx(acts[expected, unit].numpy(), abs=1e-6)


def test_crop_box_is_the_receptive_field_of_the_argmax(planted_catalog):
    layer = planted_catalog.df("SELECT rf_size, rf_stride, rf_offset FROM layers").iloc[0]
    assert (layer.rf_size, layer.rf_stride, layer.rf_offset) == (5, 1, -2)
    t = planted_catalog.df("SELECT * FROM top_images WHERE unit = ? AND rank = 0", [RED]).iloc[0]
    assert (t.crop_top, t.crop_left, t.crop_size) == (t.y - 2, t.x - 2, 5)


def tables(cat):
    out = {}
    for t in cat.tables():
        df = cat.df(f"SELECT * FROM {t}")
        out[t] = df.drop(columns=[c for c in ("seconds", "ingested_at") if c in df]).sort_values(list(df.columns[:5])
                                                                                              if len(df.columns) >= 5 else list(df.columns)).reset_index(drop=True)
    return out


def test_same_catalogue_from_two_batch_sizes(tmp_path, planted_folder, planted_model):
    results = []
    for batch in (1, 7):
        path = tmp_path / f"b{batch}.duckdb"
        opts = IngestOptions(image_size=32, batch_size=batch, workers=0, progress=False, device="cpu", top_n=12)
        ingest(planted_model, open_images(planted_folder), path, "planted", ["0"], opts)
        with catalog.open(path) as cat:
            results.append(tables(cat))
    a, b = results
    assert a.keys() == b.keys()
    for name in a:
        if name == "units":  # PNG bytes compare exactly; floats within rounding of summation order
            assert a[name].nf_png.tolist() == b[name].nf_png.tolist()
        np.testing.assert_equal(a[name].drop(columns=["nf_png"], errors="ignore").to_numpy().tolist(),
                                b[name].drop(columns=["nf_png"], errors="ignore").to_numpy().tolist())


def test_rows_of_layers_built_side_by_side_equal_one_at_a_time(tmp_path, planted_folder, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from ingest import rows
    from ingest.models import LoadedModel

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 8, 3, 2, 1),
                              torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, 2, 1)).eval()
    model = LoadedModel(net, "three", "callable", None, (0.0,) * 3, (1.0,) * 3)
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=12)
    results = []
    for workers in (1, 3):
        monkeypatch.setattr(rows, "ThreadPoolExecutor", lambda max_workers: ThreadPoolExecutor(workers))
        path = tmp_path / f"w{workers}.duckdb"
        ingest(model, open_images(planted_folder), path, "three", ["0", "2", "4"], opts)
        with catalog.open(path) as cat:
            results.append(tables(cat))
    a, b = results
    assert a.keys() == b.keys() and len(a["units"]) == 6 + 8 + 8
    for name in a:
        assert a[name].equals(b[name]), name


def test_reingest_replaces_rows_and_models_share_the_catalogue(tmp_path, planted_folder, planted_model, fast_options):
    path = tmp_path / "cat.duckdb"
    images = open_images(planted_folder)
    ingest(planted_model, images, path, "planted", ["0"], fast_options)
    ingest(planted_model, images, path, "planted", ["0"], fast_options)
    ingest(planted_model, images, path, "second", ["0"], fast_options)
    with catalog.open(path) as cat:
        counts = cat.df("SELECT model, count(*) AS n FROM neurons GROUP BY model ORDER BY model")
        assert counts.n.tolist() == [3, 3]
        assert cat.query("SELECT count(*) FROM images").column(0)[0].as_py() == 30
        assert cat.query("SELECT count(*) FROM top_images WHERE model = 'planted'").column(0)[0].as_py() == 90
