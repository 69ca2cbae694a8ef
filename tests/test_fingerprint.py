"""A checkpoint joins only a run of the same network, by the weights' content; a model without
weights is built from a seed, so the same command gives the same catalogue."""
import time

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.data import open_images
from ingest.models import load_model, weights_digest
from ingest.network import Network
from ingest.pipeline import IngestOptions, checkpoint_path, ingest
from ingest.record import Checkpoint, fingerprint_of, record, run_key, scan_state
from tests.planted import EDGE, RED, planted
from tests.test_ingest_planted import tables

runner = CliRunner()


def tiny() -> nn.Module:
    """A callable model with random weights."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))


def top_units(cat_path):
    with catalog.open(cat_path, read_only=True) as cat:
        return cat.df("SELECT unit, rank, image_id FROM top_images ORDER BY unit, rank")


def test_a_checkpoint_of_overwritten_weights_is_not_resumed(tmp_path, planted_folder):
    weights = tmp_path / "w.pt"
    torch.save(planted().state_dict(), weights)
    images = open_images(planted_folder)
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=6)
    cat = tmp_path / "c.duckdb"

    # A run killed after its scan (during crops or the load) leaves the whole scan in its checkpoint.
    first = load_model("tests.planted:planted", str(weights))
    key = run_key(first, ["0"], images, opts)
    checkpoint = Checkpoint(checkpoint_path(cat, "p", images.name), fingerprint_of(key), key)
    state = scan_state(["0"], opts.top_n, images, "0")
    record(Network(first, "cpu"), images, state, opts, checkpoint=checkpoint)
    assert checkpoint.path.exists()

    # The same file name, other weights: the red and edge detectors swap places.
    swapped = planted().state_dict()
    order = torch.tensor([EDGE, RED, 2])
    torch.save({k: v[order] for k, v in swapped.items()}, weights)
    second = load_model("tests.planted:planted", str(weights))
    with pytest.warns(UserWarning, match="other model weights"):
        ingest(second, images, cat, "p", ["0"], opts)
    assert not checkpoint.path.exists()

    fresh = tmp_path / "fresh.duckdb"
    ingest(load_model("tests.planted:planted", str(weights)), images, fresh, "p", ["0"], opts)
    assert top_units(cat).equals(top_units(fresh))  # scanned anew with the new weights, not resumed


def test_the_same_weights_from_another_file_still_resume(tmp_path, planted_folder):
    images = open_images(planted_folder)
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu")
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(planted().state_dict(), a)
    torch.save(planted().state_dict(), b)
    key_a = run_key(load_model("tests.planted:planted", str(a)), ["0"], images, opts)
    key_b = run_key(load_model("tests.planted:planted", str(b)), ["0"], images, opts)
    assert fingerprint_of(key_a) == fingerprint_of(key_b)


def test_seeded_random_initialisation(recwarn):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    one, two = load_model("resnet18"), load_model("resnet18", seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is left as it was
    other = load_model("resnet18", seed=1)
    assert one.seed == 0 and other.seed == 1
    s1, s2, s3 = one.module.state_dict(), two.module.state_dict(), other.module.state_dict()
    assert s1.keys() == s2.keys() == s3.keys()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)
    assert weights_digest(one.module) == weights_digest(two.module) != weights_digest(other.module)
    # A callable that builds random layers, too.
    a, b = load_model("tests.test_fingerprint:tiny"), load_model("tests.test_fingerprint:tiny", seed=5)
    torch.manual_seed(999)
    c = load_model("tests.test_fingerprint:tiny")
    assert weights_digest(a.module) == weights_digest(c.module) != weights_digest(b.module)


def test_the_digest_is_fast_and_reads_content_not_names(recwarn):
    model = load_model("resnet18").module
    start = time.perf_counter()
    digest = weights_digest(model)
    assert time.perf_counter() - start < 2.0  # about 40 ms on a laptop core: 47 MB of weights
    with torch.no_grad():
        model.fc.bias[0] += 1e-6
    assert weights_digest(model) != digest
    with torch.no_grad():
        model.fc.bias[0] -= 1e-6
    assert weights_digest(model.to(torch.bfloat16)) != digest  # dtype counts


def test_two_ingests_without_weights_give_the_same_catalogue(tmp_path, planted_folder):
    paths = []
    for k in (1, 2):
        torch.manual_seed(k)  # whatever the caller did with the global RNG before
        path = tmp_path / f"c{k}.duckdb"
        r = runner.invoke(app, ["ingest", "--model", "resnet18", "--layers", "layer1.0.conv1,layer2.0.conv1",
                                "--data", str(planted_folder), "--catalog", str(path), "--image-size", "32",
                                "--workers", "0", "--top-n", "8", "-q"])
        assert r.exit_code == 0, r.output
        assert "RANDOM weights" in r.output
        paths.append(path)
    with catalog.open(paths[0], read_only=True) as a, catalog.open(paths[1], read_only=True) as b:
        ta, tb = tables(a), tables(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name].equals(tb[name]), name
