"""Odd and broken input: skipped and recorded, converted correctly, or refused with exit code 2."""
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.data import read_rgb

runner = CliRunner()
PLANTED = ["--model", "tests.planted:planted", "--layers", "0", "--image-size", "32", "--workers", "0", "-q"]


def test_odd_modes_are_converted_not_dropped(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255          # red everywhere ...
    rgba[:2, :, 3] = 0          # ... transparent in the top half
    rgba[2:, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = np.asarray(read_rgb(tmp_path / "a.png"))
    assert rgb[0, 0].tolist() == [128, 128, 128]  # composited on the gray background, not red
    assert rgb[3, 0].tolist() == [255, 0, 0]

    deep = np.array([[0, 32768], [65535, 65535]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    assert np.asarray(read_rgb(tmp_path / "d.png"))[:, :, 0].tolist() == [[0, 128], [255, 255]]

    Image.new("CMYK", (3, 3), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    assert np.asarray(read_rgb(tmp_path / "c.jpg"))[1, 1].tolist() == pytest.approx([255, 255, 255], abs=2)
    Image.new("L", (3, 3), 77).save(tmp_path / "g.png")
    assert np.asarray(read_rgb(tmp_path / "g.png"))[0, 0].tolist() == [77, 77, 77]


def test_broken_files_are_skipped_and_recorded(tmp_path, planted_folder):
    bad = planted_folder / "odd"
    bad.mkdir()
    (bad / "garbage.jpg").write_bytes(b"this is not a jpeg at all")
    (bad / "empty.png").write_bytes(b"")
    Image.new("RGBA", (32, 32), (255, 0, 0, 128)).save(bad / "rgba.png")
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(bad / "cmyk.jpg")
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(bad / "deep.png")
    (planted_folder / "nothing").mkdir()
    cat_path = tmp_path / "c.duckdb"
    result = runner.invoke(app, ["ingest", "--data", str(planted_folder), "--catalog", str(cat_path), *PLANTED])
    assert result.exit_code == 0, result.output
    assert "3 problems" in result.output
    with catalog.open(cat_path) as cat:
        errors = cat.df("SELECT path, stage, error FROM ingest_errors ORDER BY path")
        assert errors.path.tolist() == ["nothing", "odd/empty.png", "odd/garbage.jpg"]
        assert errors.stage.tolist() == ["listing", "decode", "decode"]
        assert cat.query("SELECT n_images FROM models").column(0)[0].as_py() == 33  # 30 + rgba, cmyk, 16-bit
        assert cat.query("SELECT count(*) FROM images").column(0)[0].as_py() == 35  # every listed file is kept


def test_weights_that_do_not_fit_exit_2_naming_the_keys(tmp_path):
    from torchvision.models import alexnet

    state = alexnet().state_dict()
    del state["classifier.6.weight"]
    state["extra.layer"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pt")
    result = runner.invoke(app, ["ingest", "--model", "alexnet", "--weights", str(tmp_path / "w.pt"),
                                 "--data", str(tmp_path), "--catalog", str(tmp_path / "c.duckdb")])
    assert result.exit_code == 2
    assert "classifier.6.weight" in result.output and "extra.layer" in result.output


def test_empty_data_set_exits_2(tmp_path):
    (tmp_path / "data" / "cls").mkdir(parents=True)
    result = runner.invoke(app, ["ingest", "--data", str(tmp_path / "data"), "--catalog", str(tmp_path / "c.duckdb"),
                                 *PLANTED])
    assert result.exit_code == 2
    assert "no images" in result.output


def test_unknown_layer_exits_2_listing_closest_names(tmp_path, planted_folder):
    result = runner.invoke(app, ["ingest", "--model", "alexnet", "--layers", "feature.10", "--data",
                                 str(planted_folder), "--catalog", str(tmp_path / "c.duckdb")])
    assert result.exit_code == 2
    listed = result.output.split("closest first:")[1]
    assert listed.strip().startswith("features.10")


def test_random_weights_warn_loudly(tmp_path, planted_folder):
    result = runner.invoke(app, ["ingest", "--model", "alexnet", "--layers", "features.0", "--image-size", "64",
                                 "--workers", "0", "-q", "--data", str(planted_folder),
                                 "--catalog", str(tmp_path / "c.duckdb")])
    assert result.exit_code == 0, result.output
    assert "RANDOM weights" in result.output
