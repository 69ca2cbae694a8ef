"""An index registered through the `neuron_catalog.indexes` entry point by another package."""
import io
import textwrap

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.data import open_images
from ingest.indexes import LayerData, orientation_selectivity
from ingest.pipeline import ingest
from tests.planted import DEAD, EDGE, RED


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """A tiny installed distribution: a module and its dist-info with entry points."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "neurocat_test_index.py").write_text(textwrap.dedent("""
        import numpy as np

        def brightness(layer):
            return np.where(layer.has_nf, layer.nf.mean(axis=(1, 2, 3)), np.nan)

        def broken(layer):
            raise RuntimeError("plugin bug")
    """))
    info = root / "neurocat_test_index-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: neurocat-test-index\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[neuron_catalog.indexes]\nbrightness = neurocat_test_index:brightness\n"
                                           "broken = neurocat_test_index:broken\n")
    monkeypatch.syspath_prepend(str(root))
    return root


def test_plugin_index_lands_in_neurons(tmp_path, plugin_package, planted_folder, planted_model, fast_options):
    path = tmp_path / "c.duckdb"
    with pytest.warns(UserWarning, match="'broken' skipped"):  # a failing plugin costs only its own index
        ingest(planted_model, open_images(planted_folder), path, "p", ["0"], fast_options)
    with catalog.open(path) as cat:
        rows = cat.rows("SELECT unit, brightness, orientation, nf_png FROM neurons ORDER BY unit")
        for unit, value, _, png in rows:  # by hand: the mean of the stored NF
            if png is None:
                assert value is None and unit == DEAD
            else:
                assert value == pytest.approx(np.asarray(Image.open(io.BytesIO(png))).mean() / 255)
        before = {r[0]: r[2] for r in rows}
        cat.con.execute("DELETE FROM neuron_indexes WHERE \"index\" = 'orientation'")
    r = CliRunner().invoke(app, ["analyze", "index", "orientation", "--model", "p", "--catalog", str(path)])
    assert r.exit_code == 0, r.output
    with catalog.open(path, read_only=True) as cat:
        after = dict(cat.rows("SELECT unit, orientation FROM neurons"))
    assert after == pytest.approx(before, nan_ok=True)  # the same from the catalogue as at ingest
    assert after[EDGE] > 0.9 and after[DEAD] is None  # the edge detector's NF is one orientation
    assert before[RED] is None or before[RED] < 0.9
    r = CliRunner().invoke(app, ["analyze", "index", "nope", "--model", "p", "--catalog", str(path)])
    assert r.exit_code == 2 and "brightness" in r.output and "orientation" in r.output


def test_orientation_selectivity_by_hand():
    s = 9
    x = np.arange(s)
    stripes = np.broadcast_to((np.sin(x / 2.0)[None, :, None] + 1) / 2, (s, s, 3))
    yy, xx = np.mgrid[0:s, 0:s]
    blob = np.exp(-((yy - 4) ** 2 + (xx - 4) ** 2) / 4.0)[..., None].repeat(3, 2)
    flat = np.full((s, s, 3), 0.5)
    nf = np.stack([stripes, blob, flat])
    data = LayerData("m", "l", nf, np.array([True, True, True]), np.ones(3), np.ones((3, 1)), np.zeros((3, 1), int), ["c"])
    stripes_c, blob_c, flat_c = orientation_selectivity(data)
    assert stripes_c == pytest.approx(1.0) and blob_c < 0.05 and np.isnan(flat_c)


def test_gradient_is_numpys():
    from ingest.indexes import _gradient

    rng = np.random.default_rng(0)
    for shape in [(3, 2, 2), (4, 5, 7), (2, 96, 96)]:
        f = rng.random(shape)
        gy, gx = np.gradient(f, axis=(1, 2))
        assert np.array_equal(_gradient(f, 1), gy) and np.array_equal(_gradient(f, 2), gx)
