import numpy as np
import pytest
from PIL import Image

from ingest.models import LoadedModel
from ingest.pipeline import IngestOptions
from tests.planted import planted

GRAY = 0.5


def planted_images(root, per_class=10, size=32, seed=0):
    """ImageFolder with three classes; only `red` holds red.

    red: a 3×3 red square on gray; blue: a 3×3 blue square on gray; bars: black | white halves.
    """
    rng = np.random.default_rng(seed)
    for label in ("red", "blue", "bars"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            img = np.full((size, size, 3), GRAY)
            y, x = rng.integers(4, size - 7, 2)
            if label == "red":
                img[y:y + 3, x:x + 3] = (1, 0, 0)
            elif label == "blue":
                img[y:y + 3, x:x + 3] = (0, 0, 1)
            else:
                img[:, :x] = 0.0
                img[:, x:] = 1.0
            Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(root / label / f"{i:02d}.png")
    return root


@pytest.fixture
def planted_folder(tmp_path):
    return planted_images(tmp_path / "planted")


@pytest.fixture
def planted_model():
    # Inputs stay in [0, 1]: mean 0, std 1.
    return LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)


@pytest.fixture
def fast_options():
    return IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu")


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run only where torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
