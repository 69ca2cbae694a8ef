"""γ per extra label column (the demo's hue), and the response-based colour index color_drop."""
import pytest

import catalog
from ingest.data import open_images
from ingest.pipeline import ingest
from ingest.stimuli import generate
from tests.planted import DEAD, EDGE, RED


@pytest.fixture(scope="module")
def demo_catalogue(tmp_path_factory):
    from ingest.models import LoadedModel
    from ingest.pipeline import IngestOptions
    from tests.planted import planted

    tmp = tmp_path_factory.mktemp("labels")
    generate(tmp / "demo", variants=1, size=48)  # 160 stimuli: 5 shapes × 8 hues × 4 textures
    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    ingest(model, open_images(tmp / "demo" / "manifest.csv"), tmp / "c.duckdb", "planted", ["0"],
           IngestOptions(image_size=48, batch_size=32, workers=0, progress=False, device="cpu", top_n=10,
                         color_drop=True))
    return tmp / "c.duckdb"


def test_red_detector_is_hue_selective(demo_catalogue):
    with catalog.open(demo_catalogue, read_only=True) as cat:
        rows = {(u, s): (g, m, top) for u, s, g, m, top in cat.rows(
            "SELECT unit, label_set, gamma, m, top_label FROM label_selectivity")}
        shape_gamma = cat.rows("SELECT gamma FROM neurons WHERE unit = ?", [RED])[0][0]
        counts = cat.rows("SELECT label, count FROM label_frequencies WHERE unit = ? AND label_set = 'hue'",
                          [RED])
    assert rows[(RED, "hue")] == (1.0, 1, "red") and counts == [("red", 10)]
    assert rows[(RED, "texture")][0] < 1  # red comes in every texture
    assert shape_gamma < 1  # neurons.gamma stays the class (shape) one: red comes in every shape
    assert rows[(DEAD, "hue")] == (None, None, None)


def test_color_drop_is_high_for_red_and_zero_for_the_achromatic_edge(demo_catalogue):
    with catalog.open(demo_catalogue, read_only=True) as cat:
        drop = dict(cat.rows("SELECT unit, color_drop FROM neurons"))
        layer = cat.rows("SELECT mean_alpha, mean_color_drop, agreement FROM color_indexes_by_layer")[0]
    # Gray pixels have R = G = B, where R − (G + B)/2 is 0: the red detector loses everything.
    assert drop[RED] == pytest.approx(1.0)
    # Equal weights on R, G, B: the luma image has the same channel sum, so (up to 8-bit rounding) no loss.
    assert abs(drop[EDGE]) < 0.02
    assert drop[DEAD] is None
    assert layer[1] == pytest.approx((drop[RED] + drop[EDGE]) / 2) and layer[2] == 1.0


def test_color_drop_is_off_by_default_on_a_cpu_and_the_flag_turns_it_on(tmp_path, planted_folder):
    """Its gray pass is about one more forward pass of a small set on a CPU: by default only on a GPU."""
    from typer.testing import CliRunner

    from ingest.cli import app
    from ingest.options import IngestOptions

    assert not IngestOptions(device="cpu").wants_color_drop()  # on CUDA: tests/test_gpu.py
    assert IngestOptions(device="cpu", color_drop=True).wants_color_drop()
    common = ["ingest", "--model", "tests.planted:planted", "--layers", "0", "--data", str(planted_folder),
              "--image-size", "32", "--workers", "0", "--device", "cpu", "-q", "--top-n", "5"]
    drops = {}
    for flag in ([], ["--color-drop"]):
        path = tmp_path / f"c{len(flag)}.duckdb"
        result = CliRunner().invoke(app, common + ["--catalog", str(path)] + flag)
        assert result.exit_code == 0, result.output
        with catalog.open(path, read_only=True) as cat:
            drops[bool(flag)] = dict(cat.rows("SELECT unit, color_drop FROM neurons"))
    assert set(drops[False].values()) == {None}
    assert drops[True][RED] == pytest.approx(1.0) and drops[True][DEAD] is None
