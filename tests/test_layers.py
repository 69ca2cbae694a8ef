import pytest
import torchvision

from ingest.errors import UsageError
from ingest.layers import resolve_layers


def test_default_is_every_conv_and_globs_match_in_model_order():
    model = torchvision.models.resnet18()
    assert len(resolve_layers(model, None)) == 20
    assert resolve_layers(model, ["layer4.*.conv2", "conv1"]) == ["conv1", "layer4.0.conv2", "layer4.1.conv2"]


def test_unknown_name_lists_closest_first():
    with pytest.raises(UsageError, match=r"closest first: layer4\.1\.conv[12], layer4\.1\.conv[12],"):
        resolve_layers(torchvision.models.resnet18(), ["layer4.1.conv3"])
