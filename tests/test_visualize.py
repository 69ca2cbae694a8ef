"""Activation maximisation on planted networks whose best stimuli are known."""
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import catalog
from ingest import optvis
from ingest.cli import app
from ingest.models import load_model
from ingest.pipeline import ingest
from ingest.data import open_images
from tests.planted import DEAD, EDGE, RED, planted

IDENTITY = lambda x: x  # noqa: E731 - the planted net reads [0, 1] pixels


def _render(targets, seeds=None, param="pixel", steps=96, size=32):
    seeds = seeds or [7 + t for t in targets]
    return optvis.render(planted().eval(), optvis.channel("0", targets), seeds, IDENTITY, size=size, steps=steps,
                         param=param)


def test_objective_increases_and_beats_noise_and_the_mean_image():
    result = _render([RED, EDGE])
    net = planted().eval()
    noise = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    gray = torch.full((2, 3, 32, 32), 0.5)
    with torch.no_grad():
        baseline = torch.maximum(net(noise).mean((2, 3)).diagonal(), net(gray).mean((2, 3)).diagonal())
    history = result.history
    assert (history[-8:].mean(0) > history[:8].mean(0) + 0.1).all()
    assert (result.values > result.start + 0.1).all()
    # Noise and gray give ≈ 0 on both. Red's ceiling is 1 (pure red); the edge channel's mean over
    # the map cancels on any periodic pattern, so only a ramp across the whole image scores (≈ 0.3).
    assert (result.values > baseline + 0.2).all() and (result.values > 10 * baseline.clamp(min=0.01)).all()
    assert result.values[0] > 0.8


@pytest.mark.parametrize("param", ["pixel", "fourier"])
def test_red_detector_dreams_red(param):
    image = _render([RED], param=param, steps=128).images[0]
    rgb = image.mean((1, 2))
    o1 = (rgb[0] - rgb[1]) / math.sqrt(2)
    o2 = (rgb[0] + rgb[1] - 2 * rgb[2]) / math.sqrt(6)
    hue = math.degrees(math.atan2(o2, o1)) % 360  # pure red sits at 30° in OPP (docs/science.md §4)
    assert math.hypot(o1, o2) > 0.3 and (hue < 60 or hue > 345), (rgb, hue)
    assert rgb[0] > rgb[1] + 0.4 and rgb[0] > rgb[2] + 0.4


def test_vertical_edge_detector_dreams_vertical_structure():
    image = _render([EDGE], steps=128).images[0]
    along_x = ((image[:, :, 1:] - image[:, :, :-1]) ** 2).mean()
    along_y = ((image[:, 1:] - image[:, :-1]) ** 2).mean()
    assert along_x > 5 * along_y, (along_x, along_y)


@pytest.mark.parametrize("param", ["pixel", "fourier"])
def test_batched_equals_one_at_a_time(param):
    targets, seeds = [RED, EDGE, DEAD], [11, 12, 13]
    batched = _render(targets, seeds, param=param, steps=24)
    for i, (t, s) in enumerate(zip(targets, seeds)):
        alone = _render([t], [s], param=param, steps=24)
        torch.testing.assert_close(alone.images[0], batched.images[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(alone.values[0], batched.values[i], atol=1e-5, rtol=1e-5)


def test_unit_objective_reads_the_centre_and_logit_needs_a_vector():
    out = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    assert optvis.unit("x", [1, 2])(out).tolist() == [out[0, 1, 2, 2].item(), out[1, 2, 2, 2].item()]
    assert optvis.channel("x", [0, 1])(out).tolist() == [out[0, 0].mean().item(), out[1, 1].mean().item()]
    with pytest.raises(ValueError, match="logit"):
        optvis.logit("x", [0, 1])(out)


def test_regularisers_are_composable_and_penalties_smooth():
    t = optvis.Compose([optvis.Jitter(2), optvis.Rotate(10), optvis.Scale(0.9, 1.1), optvis.Blur(1.0)])
    assert t.n_random == 4
    x = torch.rand(2, 3, 16, 16)
    assert t(x, torch.rand(2, 4)).shape == x.shape
    # A blur of a constant image is the image; zero jitter/rotation/scale is the identity.
    flat = torch.full((1, 3, 8, 8), 0.3)
    torch.testing.assert_close(optvis.Blur(1.0)(flat, None), flat)
    centre = torch.full((1, 1), 0.5)
    for part in (optvis.Jitter(3), optvis.Rotate(10), optvis.Scale(0.8, 1.2)):
        torch.testing.assert_close(part(x[:1], centre.expand(1, part.n_random)), x[:1], atol=1e-5, rtol=0)
    rough = _render([EDGE], steps=64)
    smooth = optvis.render(planted().eval(), optvis.channel("0", [EDGE]), [7 + EDGE], IDENTITY, size=32, steps=64,
                           param="pixel", tv=2.0)
    tv = lambda im: optvis.objectives.total_variation(im)[0]  # noqa: E731
    assert tv(smooth.images) < 0.7 * tv(rough.images)


def test_visualize_stores_pictures_and_the_cli_selects_with_where(tmp_path, planted_folder, fast_options):
    path = tmp_path / "c.duckdb"
    planted_model = load_model("tests.planted:planted")  # reloadable from the models row
    ingest(planted_model, open_images(planted_folder), path, "p", ["0"], fast_options)
    runner = CliRunner()
    args = ["visualize", "--model", "p", "--layer", "0", "--where", "alpha > 0.5", "--size", "24", "--steps", "48",
            "--param", "pixel", "--catalog", str(path), "--device", "cpu", "-q"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    with catalog.open(path, read_only=True) as cat:
        rows = cat.rows("SELECT unit, kind, value, start_value, params, png FROM visualizations")
    assert [row[0] for row in rows] == [RED]  # only the red detector is colour selective
    unit, kind, value, start, params, png = rows[0]
    assert kind == "channel" and value > start + 0.5 and json.loads(params)["steps"] == 48
    picture = np.asarray(Image.open(io.BytesIO(png)))
    assert picture.shape == (24, 24, 3) and picture[..., 0].mean() > picture[..., 1].mean() + 60
    assert runner.invoke(app, args).exit_code == 0  # again: replaced, not duplicated
    r = runner.invoke(app, args[:5] + ["--units", "0-2", "--steps", "4", "--size", "16", "--catalog", str(path), "-q"])
    assert r.exit_code == 0, r.output
    with catalog.open(path, read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM visualizations")[0][0] == 3
    r = runner.invoke(app, args[:5] + ["--units", "5", "--catalog", str(path)])
    assert r.exit_code == 2 and "units 0-2" in r.output
    r = runner.invoke(app, args[:3] + ["--layer", "9", "--catalog", str(path)])
    assert r.exit_code == 2 and "ingested layers: 0" in r.output
    r = runner.invoke(app, args[:5] + ["--where", "nonsense >", "--catalog", str(path)])
    assert r.exit_code == 2 and "--where" in r.output
    ingest(planted_model, open_images(planted_folder), path, "p", ["0"], fast_options)
    with catalog.open(path, read_only=True) as cat:  # a re-ingest drops pictures of the old weights
        assert cat.rows("SELECT count(*) FROM visualizations")[0][0] == 0
