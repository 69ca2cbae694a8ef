"""The Ray Data engine gives the local engine's catalogue, also when a model actor dies mid-run."""
import pytest
import torch

import catalog
from ingest.data import open_images
from ingest.models import LoadedModel
from ingest.pipeline import IngestOptions, ingest
from tests.planted import _CrashOnce, planted
from tests.test_ingest_planted import tables

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from ingest import ray_engine

    ray_engine.init("local")
    yield
    ray.shutdown()


def run(path, images, module, engine):
    model = LoadedModel(module.eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    opts = IngestOptions(image_size=32, batch_size=4, workers=1 if engine == "ray" else 0, progress=False,
                         device="cpu", top_n=12, engine=engine)
    ingest(model, images, path, "planted", ["0"], opts)
    with catalog.open(path, read_only=True) as cat:
        return tables(cat)


def same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].drop(columns=["root"], errors="ignore").equals(b[name].drop(columns=["root"], errors="ignore")), name


def test_ray_equals_local(tmp_path, planted_folder):
    images = open_images(planted_folder)
    torch.manual_seed(0)
    module = planted()
    same(run(tmp_path / "local.duckdb", images, module, "local"), run(tmp_path / "ray.duckdb", images, module, "ray"))


def test_an_actor_killed_mid_run_changes_nothing(tmp_path, planted_folder):
    images = open_images(planted_folder)
    marker = tmp_path / "crashed"
    local = run(tmp_path / "local.duckdb", images, planted(), "local")
    crashed = run(tmp_path / "ray.duckdb", images, _CrashOnce(str(marker)), "ray")
    assert marker.exists()  # the actor did die
    same(local, crashed)
