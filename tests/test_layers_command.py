"""`neurocat layers`: what `--layers` can index, with channels, output size and receptive field; and the
unknown-layer error that points to it."""
import csv
import io
import json
import re
from pathlib import Path

import pytest
import torchvision
from typer.testing import CliRunner

from ingest.cli import app
from ingest.errors import UsageError
from ingest.layer_table import layer_table
from ingest.layers import conv_layers, resolve_layers
from ingest.models import load_model
from ingest.receptive_field import receptive_fields

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(scope="module")
def resnet18():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        return load_model("resnet18")


@pytest.fixture(scope="module")
def conv_table(resnet18):
    return {r["layer"]: r for r in layer_table(resnet18, 224).to_pylist()}


def test_resnet18_lists_its_20_convolutions_with_shapes_and_fields(resnet18, conv_table):
    assert list(conv_table) == conv_layers(resnet18.module) and len(conv_table) == 20
    assert {r["type"] for r in conv_table.values()} == {"Conv2d"}
    conv1 = conv_table["conv1"]
    assert (conv1["channels"], conv1["out_height"], conv1["out_width"]) == (64, 112, 112)  # 7×7, stride 2, pad 3
    assert (conv1["rf_size"], conv1["rf_stride"]) == (7, 2)
    deep = conv_table["layer4.1.conv2"]
    assert (deep["channels"], deep["out_height"], deep["out_width"]) == (512, 7, 7)
    rf = receptive_fields(resnet18.module, ["layer4.1.conv2"], 224)["layer4.1.conv2"]
    assert (deep["rf_size"], deep["rf_stride"]) == (rf.size, rf.stride) == (435, 32)
    assert conv_table["layer2.0.downsample.0"]["out_height"] == 28


@pytest.mark.slow
def test_all_adds_every_named_module(resnet18, conv_table):
    table = layer_table(resnet18, 224, all_modules=True).to_pylist()
    rows = {r["layer"]: r for r in table}
    assert list(rows) == [n for n, _ in resnet18.module.named_modules() if n]
    assert rows["bn1"]["type"] == "BatchNorm2d" and rows["relu"]["type"] == "ReLU"
    assert rows["layer1.0.bn1"]["channels"] == 64 and rows["layer1.0.relu"]["type"] == "ReLU"
    assert rows["layer3"]["type"] == "Sequential" and (rows["layer3"]["out_height"], rows["layer3"]["channels"]) == (14, 256)
    # a BatchNorm or a ReLU sees exactly what its input sees
    assert (rows["bn1"]["rf_size"], rows["bn1"]["rf_stride"]) == (7, 2)
    assert (rows["maxpool"]["rf_size"], rows["maxpool"]["rf_stride"]) == (11, 4)  # 3×3, stride 2 after conv1
    # a classifier is one position: no field to measure; a (batch, n) output counts as n channels on 1×1
    assert (rows["fc"]["type"], rows["fc"]["channels"], rows["fc"]["out_height"], rows["fc"]["rf_size"]) == \
        ("Linear", 1000, 1, None)
    assert rows["avgpool"]["rf_size"] is None and rows["avgpool"]["channels"] == 512
    assert [r for r in table if r["type"] == "Conv2d"] == list(conv_table.values())


def test_cli_formats_parse(tmp_path):
    args = ["layers", "--model", "tests.planted:planted", "--image-size", "32"]
    r = runner.invoke(app, args + ["--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"layer": "0", "type": "Conv2d", "channels": 3, "out_height": 32,
                                     "out_width": 32, "rf_size": 5, "rf_stride": 1}]  # 5×5, padding 2
    r = runner.invoke(app, args + ["--format", "csv", "--all"])
    assert list(csv.DictReader(io.StringIO(r.stdout))) == [
        {"layer": "0", "type": "Conv2d", "channels": "3", "out_height": "32", "out_width": "32", "rf_size": "5",
         "rf_stride": "1"}]
    r = runner.invoke(app, args)
    assert re.search(r"^0\s+Conv2d\s+3\s+32\s+32\s+5\s+1$", r.stdout, re.M) and "(1 row)" in r.stdout
    r = runner.invoke(app, ["layers", "--model", "resnet_18"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "resnet18" in r.output


def test_cli_takes_a_torchscript_file(tmp_path):
    import torch

    from tests.planted import planted

    path = tmp_path / "planted.pt"
    torch.jit.script(planted()).save(str(path))
    r = runner.invoke(app, ["layers", "--model", str(path), "--image-size", "32", "--all", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"layer": "0", "type": "Conv2d", "channels": 3, "out_height": 32,
                                     "out_width": 32, "rf_size": 5, "rf_stride": 1}]  # only convolutions: a graph


def test_unknown_layer_lists_convolutions_first_and_points_to_the_command():
    with pytest.raises(UsageError) as err:
        resolve_layers(torchvision.models.resnet18(), ["layer1.0.bn"])
    message = str(err.value)
    assert "\n" not in message
    names = re.findall(r"[\w.]+\.(?:conv|bn)\d", message)
    assert names[:2] == ["layer1.0.conv1", "layer1.0.conv2"]  # the convolutions, closest first
    assert "layer1.0.bn1" in names
    last_conv = max(i for i, n in enumerate(names) if ".conv" in n)
    assert last_conv < names.index("layer1.0.bn1")  # every convolution before any batch norm
    assert "neurocat layers --model <your model>" in message


def test_readme_documents_every_layers_option():
    readme = (ROOT / "README.md").read_text()
    help_text = runner.invoke(app, ["layers", "--help"], terminal_width=200).output
    for option in re.findall(r"(--[a-z][a-z-]+)", help_text):
        if option != "--help":
            assert option in readme, f"README does not document `neurocat layers {option}`"
    assert "neurocat layers" in readme
