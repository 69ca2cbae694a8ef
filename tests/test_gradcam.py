"""grad-CAM on a planted classifier that reads each class in its own corner."""
import io

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.data import open_images
from ingest.gradcam import Target, grad_cam
from ingest.models import load_model
from ingest.pipeline import ingest
from tests.planted import RED, corner_classifier


def _two_patches(size=16):
    img = torch.full((1, 3, size, size), 0.5)
    img[:, :, 1:5, 2:6] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)      # red, top left
    img[:, :, 12:15, 10:14] = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)  # green, bottom right
    return img


def _quadrant_of_peak(heat):
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    return int(y >= heat.shape[0] // 2), int(x >= heat.shape[1] // 2)


def test_grad_cam_peaks_where_the_class_looks():
    net, img = corner_classifier(), _two_patches()
    red, red_score = grad_cam(net, img, "0", Target(0))
    green, _ = grad_cam(net, img, "0", Target(1))
    assert _quadrant_of_peak(red[0].numpy()) == (0, 0) and _quadrant_of_peak(green[0].numpy()) == (1, 1)
    assert red[0, 2, 3] == 1.0 and red[0, 12, 12] == 0.0  # normalised; nothing where class 0 does not look
    assert red_score.item() == 16.0  # hand-computed: 16 red pixels × (R − G = 1) × weight 1
    predicted, _ = grad_cam(net, img, "0", Target(None))  # the predicted class: 0 (16 red against 12 green pixels)
    torch.testing.assert_close(predicted, red)
    channel, _ = grad_cam(net, img, "0", Target(1, "0"))  # the green channel, read at its own layer
    assert _quadrant_of_peak(channel[0].numpy()) == (1, 1)


def test_gradcam_cli_writes_an_overlay(tmp_path):
    path = tmp_path / "two.png"
    Image.fromarray((_two_patches()[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    out = tmp_path / "cam.png"
    r = CliRunner().invoke(app, ["gradcam", str(path), "--model", "tests.planted:corner_classifier", "--layer", "0",
                                 "--label", "1", "--image-size", "16", "--out", str(out), "--device", "cpu",
                                 "--catalog", str(tmp_path / "none.duckdb")])
    assert r.exit_code == 0, r.output
    picture = np.asarray(Image.open(out)).astype(float)
    assert picture.shape == (16, 16, 3)
    # 'inferno' is bright yellow at 1 and black at 0: the bottom-right patch is the brightest.
    assert picture[12:15, 10:14].mean() > picture[1:5, 2:6].mean() + 40
    r = CliRunner().invoke(app, ["gradcam", str(path), "--model", "tests.planted:corner_classifier", "--layer", "nope",
                                 "--image-size", "16", "--out", str(out)])
    assert r.exit_code == 2 and "no layer 'nope'" in r.output


def test_gradcam_of_top_images_is_stored(tmp_path, planted_folder, fast_options):
    path = tmp_path / "c.duckdb"
    planted_model = load_model("tests.planted:planted")
    ingest(planted_model, open_images(planted_folder), path, "p", ["0"], fast_options)
    r = CliRunner().invoke(app, ["gradcam", "--model", "p", "--layer", "0", "--top", "3", "--catalog", str(path),
                                 "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    with catalog.open(path, read_only=True) as cat:
        rows = cat.rows("SELECT v.unit, v.rank, v.image_id, t.image_id, v.png, v.value, t.activation "
                        "FROM visualizations v "
                        "JOIN top_images t USING (model, dataset, layer, unit, rank) "
                        "WHERE kind = 'gradcam' ORDER BY 1, 2")
    assert [(u, k) for u, k, *_ in rows] == [(u, k) for u in (0, 1) for k in range(3)]  # the dead unit is skipped
    assert all(r[2] == r[3] for r in rows)
    # The target is the channel's spatial maximum: on its own top image, the stored activation.
    assert all(abs(r[5] - r[6]) < 1e-5 for r in rows)
    red = next(r for r in rows if r[0] == RED)
    assert np.asarray(Image.open(io.BytesIO(red[4]))).shape == (32, 32, 3)
