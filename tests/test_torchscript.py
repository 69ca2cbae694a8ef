"""TorchScript files: layers tapped by graph rewriting give what hooks give on the Python module."""
import pytest
import torch
import torchvision
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.layers import resolve_layers
from ingest.models import load_model
from ingest.receptive_field import receptive_fields
from ingest.taps import LayerTap
from tests.planted import planted


def saved(module, path, how):
    module = module.eval()
    scripted = torch.jit.trace(module, torch.rand(1, 3, 64, 64)) if how == "trace" else torch.jit.script(module)
    scripted.save(str(path))
    return str(path)


@pytest.mark.parametrize("how", ["trace", "script"])
def test_tapped_outputs_equal_hooked_outputs(tmp_path, how):
    net = torchvision.models.resnet18().eval()
    loaded = load_model(saved(net, tmp_path / "r.pt", how)).module
    layers = ["conv1", "layer2.0.downsample.0", "layer4.1.conv2"]
    assert resolve_layers(loaded, ["layer2.0.*"]) == ["layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0"]
    x = torch.rand(2, 3, 64, 64)
    got, want = {}, {}
    LayerTap(loaded, layers).run(x, got.__setitem__)
    with LayerTap(net, layers) as tap:
        tap.run(x, want.__setitem__)
    for name in layers:
        torch.testing.assert_close(got[name], want[name])


def test_receptive_field_of_a_scripted_vgg(tmp_path):
    loaded = load_model(saved(torchvision.models.vgg16(), tmp_path / "v.pt", "script")).module
    rf = receptive_fields(loaded, ["features.0", "features.28"], 224)
    assert (rf["features.28"].size, rf["features.28"].stride) == (196, 16)  # max-pools made average pools
    assert rf["features.0"].size == 3


def test_ingest_a_traced_model_equals_the_python_model(tmp_path, planted_folder):
    model_file = saved(planted(), tmp_path / "p.pt", "trace")
    common = ["--layers", "0", "--image-size", "32", "--workers", "0", "-q", "--data", str(planted_folder),
              "--catalog", str(tmp_path / "c.duckdb")]
    assert CliRunner().invoke(app, ["ingest", "--model", model_file, "--name", "ts", *common]).exit_code == 0
    r = CliRunner().invoke(app, ["ingest", "--model", "tests.planted:planted", "--name", "py", *common])
    assert r.exit_code == 0, r.output
    with catalog.open(tmp_path / "c.duckdb") as cat:
        a = cat.df("SELECT layer, unit, rank, image_id, activation FROM top_images WHERE model = 'ts' ORDER BY 1, 2, 3")
        b = cat.df("SELECT layer, unit, rank, image_id, activation FROM top_images WHERE model = 'py' ORDER BY 1, 2, 3")
        assert a.equals(b)
        assert cat.df("SELECT source FROM models WHERE model = 'ts'").source[0] == "torchscript"
