"""`neurocat probe`: the planted network's neurons on new images, checked against hand-computed
activations and a direct forward pass."""
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.data import open_images
from ingest.errors import UsageError
from ingest.models import IMAGENET_MEAN, IMAGENET_STD
from ingest.pipeline import ingest
from ingest.probe import probe, top_neurons
from tests.planted import DEAD, EDGE, RED

ROOT = Path(__file__).resolve().parent.parent
GRAY = 128  # the planted data set's background, as saved


def save(path, patch=None):
    """A 32×32 gray PNG, optionally with a pure red block ``(top, left, height, width)``."""
    img = np.full((32, 32, 3), GRAY, np.uint8)
    if patch:
        top, left, h, w = patch
        img[top:top + h, left:left + w] = (255, 0, 0)
    Image.fromarray(img).save(path)
    return path


def direct(module, path, mean=(0.0,) * 3, std=(1.0,) * 3):
    """(channels,) spatial maxima of the planted conv on the file, computed here without the pass driver."""
    x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return module(x).flatten(2).max(2).values[0]


@pytest.fixture
def probed(tmp_path, planted_folder, planted_model, fast_options):
    path = tmp_path / "cat.duckdb"
    ingest(planted_model, open_images(planted_folder), path, "planted", ["0"], fast_options)
    red = save(tmp_path / "red.png", (10, 12, 2, 3))  # 6 red pixels: less than the data set's 3×3 squares
    gray = save(tmp_path / "gray.png")
    with catalog.open(path) as cat:
        probe(cat, "planted", [red, gray], device="cpu", network=planted_model)
        yield cat, red, gray


def rows(cat, image=None):
    return cat.df("SELECT * FROM probe_activations WHERE ? IS NULL OR image_path = ? ORDER BY image_path, unit",
                  [None if image is None else str(image), None if image is None else str(image)])


def test_red_unit_answers_the_red_block_as_computed_by_hand(probed, planted_model):
    cat, red, gray = probed
    a_max = dict(cat.rows("SELECT unit, a_max FROM units WHERE layer = '0'"))
    assert a_max[RED] == pytest.approx(9 / 25, abs=1e-6)  # the data set's 3×3 red squares
    got = rows(cat, red).set_index("unit")
    # R − (G + B)/2 over the 5×5 window: 1/25 per red pixel, 0 per gray one; the window holds all 6
    assert got.activation[RED] == pytest.approx(6 / 25, abs=1e-6)
    assert got.activation.tolist() == pytest.approx(direct(planted_model.module, red).tolist(), abs=1e-6)
    assert got.rel_activation[RED] == pytest.approx(got.activation[RED] / a_max[RED])
    assert got.rel_activation[RED] == pytest.approx(2 / 3, abs=1e-5)
    assert got.rel_activation[EDGE] == pytest.approx(got.activation[EDGE] / a_max[EDGE])
    assert (got.model.unique().tolist(), got.dataset.unique().tolist(), got.layer.unique().tolist()) == \
        (["planted"], ["planted"], ["0"])
    assert got.image_sha256.unique().tolist() == [hashlib.sha256(red.read_bytes()).hexdigest()]


def test_gray_gives_the_red_unit_zero_and_the_dead_unit_no_ratio(probed, planted_model):
    cat, red, gray = probed
    got = rows(cat, gray).set_index("unit")
    # gray adds 0 per pixel, up to float rounding
    assert got.activation[RED] == pytest.approx(0.0, abs=1e-6) and got.rel_activation[RED] == pytest.approx(0.0, abs=1e-5)
    assert got.activation.tolist() == pytest.approx(direct(planted_model.module, gray).tolist(), abs=1e-6)
    dead = rows(cat).query(f"unit == {DEAD}")
    assert len(dead) == 2 and (dead.activation == -1.0).all()  # zero weights, bias −1
    assert dead.rel_activation.isna().all()  # a_max <= 0: no scale


def test_probing_the_same_content_again_replaces_its_rows(probed, planted_model, tmp_path):
    cat, red, gray = probed
    before = rows(cat)
    assert len(before) == 2 * 3
    copy = shutil.copy(red, tmp_path / "copy-of-red.png")
    probe(cat, "planted", [copy, copy], device="cpu", network=planted_model)  # twice: one content, once
    after = rows(cat)
    assert len(after) == 2 * 3
    assert sorted(set(after.image_path)) == sorted([str(gray), str(copy)])  # the red rows now name the copy
    assert after.activation.sum() == pytest.approx(before.activation.sum())


def test_view_answers_colour_selective_above_half(probed):
    cat, red, gray = probed
    hits = cat.rows("SELECT image_path, layer, unit FROM probe_neurons WHERE rel_activation > 0.5 AND alpha > 0.5")
    assert hits == [(str(red), "0", RED)]
    top = top_neurons(cat, "planted", "planted", cat.query("SELECT * FROM probe_activations"), top=1)
    assert top.column("unit").to_pylist()[top.column("image_path").to_pylist().index(str(red))] == RED


def test_unreadable_image_is_one_error_and_writes_nothing(probed, planted_model, tmp_path):
    cat, red, gray = probed
    before = rows(cat)
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    for paths, name in (([red, bad], "bad.png"), ([tmp_path / "missing.jpg"], "missing.jpg")):
        with pytest.raises(UsageError, match=rf"cannot read image \S*{name}") as err:
            probe(cat, "planted", paths, device="cpu", network=planted_model)
        assert "\n" not in str(err.value)
    assert rows(cat).equals(before)
    with pytest.raises(UsageError, match="ingested layers: 0"):
        probe(cat, "planted", [red], layers=["layer9"], network=planted_model)


def test_cli_prints_the_top_neurons(tmp_path, planted_folder):
    runner = CliRunner()
    cat = str(tmp_path / "c.duckdb")
    r = runner.invoke(app, ["ingest", "--model", "tests.planted:planted", "--layers", "0", "--image-size", "32",
                            "--workers", "0", "-q", "--data", str(planted_folder), "--catalog", cat, "--name", "p"])
    assert r.exit_code == 0, r.output
    red, gray = save(tmp_path / "red.png", (10, 12, 2, 3)), save(tmp_path / "gray.png")
    r = runner.invoke(app, ["probe", str(red), str(gray), "--model", "p", "--catalog", cat, "--top", "2",
                            "--device", "cpu", "--format", "json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert [row["image_path"] for row in shown] == [str(red)] * 2 + [str(gray)] * 2
    assert set(shown[0]) == {"image_path", "layer", "unit", "activation", "rel_activation", "alpha", "gamma",
                             "color_name"}
    # The network is reloaded from the models row, with ImageNet normalisation as in the ingest.
    from tests.planted import planted
    expected = direct(planted(), red, IMAGENET_MEAN, IMAGENET_STD)
    assert shown[0]["unit"] == RED and shown[0]["color_name"] == "red"
    assert shown[0]["activation"] == pytest.approx(expected[RED].item(), abs=1e-5)
    assert shown[0]["rel_activation"] > 0.5 and shown[1]["unit"] == EDGE
    r = runner.invoke(app, ["probe", str(red), "--model", "p", "--catalog", cat, "--top", "3", "--device", "cpu"])
    assert r.exit_code == 0 and "(3 rows)" in r.stdout
    assert re.search(rf"^{re.escape(str(red))}\s+0\s+0\s+", r.stdout, re.M)
    with catalog.open(cat, read_only=True) as c:
        assert c.rows("SELECT count(*) FROM probe_activations") == [(6,)]


def test_cli_unreadable_or_missing_image_exits_2_with_one_line(tmp_path, planted_folder):
    runner = CliRunner()
    cat = str(tmp_path / "c.duckdb")
    runner.invoke(app, ["ingest", "--model", "tests.planted:planted", "--layers", "0", "--image-size", "32",
                        "--workers", "0", "-q", "--data", str(planted_folder), "--catalog", cat, "--name", "p"])
    red = save(tmp_path / "red.png", (10, 12, 2, 3))
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"\xff\xd8\xff broken")
    for args, name in (([str(red), str(bad)], "notes.jpg"), ([str(tmp_path / "nope.png")], "nope.png")):
        r = runner.invoke(app, ["probe", *args, "--model", "p", "--catalog", cat, "--device", "cpu"])
        assert r.exit_code == 2, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and "cannot read image" in lines[0] and name in lines[0]
    with catalog.open(cat, read_only=True) as c:
        assert c.rows("SELECT count(*) FROM probe_activations") == [(0,)]
    r = runner.invoke(app, ["probe", str(red), "--model", "p", "--catalog", str(tmp_path / "none.duckdb")])
    assert r.exit_code == 2 and "no catalogue" in r.output


def test_readme_documents_every_probe_option():
    readme = (ROOT / "README.md").read_text()
    help_text = CliRunner().invoke(app, ["probe", "--help"], terminal_width=200).output
    for option in re.findall(r"(--[a-z][a-z-]+)", help_text):
        if option != "--help":
            assert option in readme, f"README does not document `neurocat probe {option}`"
    assert "neurocat probe" in readme and "probe_neurons" in readme
