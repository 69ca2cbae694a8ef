"""Ablating a planted class-detector channel costs its class, not the other."""
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import catalog
from ingest.ablation import held_out, output_classes
from ingest.cli import app
from ingest.data import open_images
from ingest.errors import UsageError
from ingest.models import load_model
from ingest.pipeline import IngestOptions, ingest


def corner_images(root, n=12):
    """16 px images: class 'a' has a red patch top left, class 'b' a green patch bottom right."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            img = np.full((16, 16, 3), 128, np.uint8)
            y, x = rng.integers(0, 4, 2)
            if label == "a":
                img[y:y + 3, x:x + 3] = (255, 0, 0)
            else:
                img[8 + y:11 + y, 8 + x:11 + x] = (0, 255, 0)
            Image.fromarray(img).save(root / label / f"{i:02d}.png")
    return root


def test_ablating_the_red_channel_costs_class_a_only(tmp_path):
    path = tmp_path / "c.duckdb"
    model = load_model("tests.planted:corner_classifier")  # reloadable by name
    # The classifier sees [0, 1] pixels only through differences R − G, so the ImageNet normalisation
    # of a callable model shifts nothing that matters: gray stays R − G ≈ 0.
    ingest(model, open_images(corner_images(tmp_path / "data")), path, "corner", ["0"],
           IngestOptions(image_size=16, batch_size=8, workers=0, progress=False, device="cpu", top_n=5))
    r = CliRunner().invoke(app, ["ablate", "--model", "corner", "--layer", "0", "--split", "1", "--catalog", str(path),
                                 "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    with catalog.open(path, read_only=True) as cat:
        rows = {(u, label): (n, base, delta) for u, label, n, base, delta in cat.rows(
            "SELECT unit, label, n_images, base_accuracy, delta_accuracy FROM ablation")}
        importance = cat.rows("SELECT unit, importance, worst_class, top_class FROM ablation_importance "
                              "ORDER BY unit")
    assert rows[(0, "a")] == (12, 1.0, -1.0)  # without red every 'a' image falls to the bias of 'b'
    assert rows[(0, "b")] == (12, 1.0, 0.0)
    assert rows[(1, "a")][2] == 0.0 and rows[(1, "b")][2] == 0.0  # green is redundant with b's bias
    assert importance[0] == (0, pytest.approx(0.5), "a", "a") and importance[1][1] == 0.0


def test_held_out_split_and_class_order():
    paths = [f"x/{i}.png" for i in range(1000)]
    part = held_out(paths, 0.2)
    assert 150 < len(part) < 250 and part == held_out(list(paths), 0.2) and held_out(paths, 1.0) == list(range(1000))
    assert output_classes(["b", "a"], 2) == ["a", "b"]
    assert output_classes(["n01440764"], 1000)[0] == "n01440764"
    with pytest.raises(UsageError, match="3 outputs"):
        output_classes(["a", "b"], 3)
