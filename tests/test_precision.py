"""The GPU path's options: channels-last and autocast give the same top-N up to rounding."""
import pytest
import torch
from torch import nn

import catalog
from ingest.data import open_images
from ingest.models import LoadedModel
from ingest.pipeline import IngestOptions, ingest


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1))


@pytest.mark.parametrize("autocast", [None, "bfloat16"])
def test_channels_last_and_autocast_keep_the_top_n(tmp_path, planted_folder, autocast):
    net = small_cnn().eval()
    rows = {}
    for name, extra in (("ref", {}), ("fast", {"channels_last": True, "autocast": autocast})):
        model = LoadedModel(net, name, "callable", None, (0.0,) * 3, (1.0,) * 3)
        ingest(model, open_images(planted_folder), tmp_path / f"{name}.duckdb", name, ["0", "3"],
               IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=5, **extra))
        with catalog.open(tmp_path / f"{name}.duckdb", read_only=True) as cat:
            rows[name] = cat.con.execute("SELECT layer, unit, rank, image_id, activation FROM top_images "
                                         "ORDER BY layer, unit, rank").fetchall()
    tolerance = 1e-5 if autocast is None else 2e-2  # bfloat16 keeps 8 significant bits
    ref, fast = rows["ref"], rows["fast"]
    assert len(ref) == len(fast)
    # Rank by rank the same activation up to the tolerance; so an image can differ only where two
    # images were tied within it.
    for (l, u, r, _, a), (l2, u2, r2, _, a2) in zip(ref, fast):
        assert (l, u, r) == (l2, u2, r2) and a2 == pytest.approx(a, rel=tolerance, abs=tolerance)
    same = sum(x[3] == y[3] for x, y in zip(ref, fast)) / len(ref)
    assert same > (0.999 if autocast is None else 0.8)
