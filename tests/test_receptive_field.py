import torch
import torchvision

from ingest.receptive_field import receptive_fields


def test_known_networks():
    vgg = receptive_fields(torchvision.models.vgg16(), ["features.0", "features.28"], 224)
    assert vgg["features.0"].size == 3
    assert (vgg["features.28"].size, vgg["features.28"].stride) == (196, 16)
    alex = receptive_fields(torchvision.models.alexnet(), ["features.0", "features.10"], 224)
    assert (alex["features.0"].size, alex["features.0"].stride, alex["features.0"].offset_y) == (11, 4, -2)
    assert (alex["features.10"].size, alex["features.10"].stride) == (163, 16)


def test_residual_network_field_larger_than_the_image():
    rf = receptive_fields(torchvision.models.resnet18(), ["conv1", "layer4.1.conv2"], 224)
    assert (rf["conv1"].size, rf["conv1"].stride, rf["conv1"].offset_y) == (7, 2, -3)
    assert (rf["layer4.1.conv2"].size, rf["layer4.1.conv2"].stride) == (435, 32)


def test_box_matches_the_gradient_of_one_position():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Conv2d(2, 2, 3, padding=1))
    rf = receptive_fields(conv, ["3"], 32)["3"]
    # 3x3/2 -> 3, pool 2 (jump 2) -> 5, 3x3 (jump 4) -> 13; offset: -1 then -1 -4 = -5
    assert (rf.size, rf.stride, rf.offset_y) == (13, 4, -5)
    assert rf.box(2, 3) == (-5 + 8, -5 + 12, -5 + 8 + 13, -5 + 12 + 13)
