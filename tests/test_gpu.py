"""Every command end to end on CUDA, compared with the same command on the CPU: top-N image ids equal,
values equal within the precision's tolerance. Skipped without a CUDA device (CI has none; run
`python -m pytest -m gpu` on a GPU machine)."""
import numpy as np
import pytest
from typer.testing import CliRunner

import catalog
from ingest.cli import app

pytestmark = pytest.mark.gpu
runner = CliRunner()
COMMON = ["--model", "tests.planted:planted", "--layers", "0", "--image-size", "32", "--workers", "0", "-q",
          "--top-n", "12", "--batch-size", "4", "--self-activation", "--color-drop"]  # on both devices (defaults by device)


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def rows(path, sql):
    with catalog.open(path, read_only=True) as cat:
        return cat.rows(sql)


def same_catalogues(cpu, gpu, atol=1e-4):
    order = "ORDER BY layer, unit, rank"
    assert rows(cpu, f"SELECT layer, unit, rank, image_id FROM top_images {order}") == \
        rows(gpu, f"SELECT layer, unit, rank, image_id FROM top_images {order}")
    a = np.array(rows(cpu, f"SELECT activation FROM top_images {order}"), dtype=float)
    b = np.array(rows(gpu, f"SELECT activation FROM top_images {order}"), dtype=float)
    np.testing.assert_allclose(a, b, atol=atol)
    for column in ("alpha", "gamma", "color_drop", "nf_self_activation"):
        a = np.array(rows(cpu, f"SELECT {column} FROM neurons ORDER BY layer, unit"), dtype=float)
        b = np.array(rows(gpu, f"SELECT {column} FROM neurons ORDER BY layer, unit"), dtype=float)
        np.testing.assert_allclose(a, b, atol=1e-3, equal_nan=True, err_msg=column)


@pytest.mark.parametrize("decode", ["cpu", "gpu"])
def test_ingest_on_cuda_equals_cpu(tmp_path, planted_folder, decode):
    cpu, gpu = tmp_path / "cpu" / "c.duckdb", tmp_path / "gpu" / "c.duckdb"
    invoke("ingest", "--data", planted_folder, "--catalog", cpu, "--device", "cpu", *COMMON)
    invoke("ingest", "--data", planted_folder, "--catalog", gpu, "--device", "cuda", "--decode", decode, *COMMON)
    assert rows(gpu, "SELECT device FROM models")[0][0].startswith("cuda")
    same_catalogues(cpu, gpu)


def test_autocast_channels_last_on_cuda(tmp_path, planted_folder):
    cpu, gpu = tmp_path / "cpu" / "c.duckdb", tmp_path / "gpu" / "c.duckdb"
    invoke("ingest", "--data", planted_folder, "--catalog", cpu, "--device", "cpu", *COMMON)
    invoke("ingest", "--data", planted_folder, "--catalog", gpu, "--device", "cuda", "--autocast", "bfloat16",
           "--channels-last", *COMMON)
    a = rows(cpu, "SELECT unit, image_id FROM top_images WHERE rank = 0 ORDER BY unit")
    b = rows(gpu, "SELECT unit, image_id FROM top_images WHERE rank = 0 ORDER BY unit")
    assert len(a) == len(b)


def test_shards_and_merge_on_cuda(tmp_path, planted_folder):
    cpu = tmp_path / "cpu" / "c.duckdb"
    invoke("ingest", "--data", planted_folder, "--catalog", cpu, "--device", "cpu", *COMMON)
    parts = []
    for shard in ("1/2", "2/2"):
        part = tmp_path / f"part-{shard[0]}"
        invoke("ingest", "--data", planted_folder, "--shard", shard, "--out", part, "--device", "cuda", *COMMON)
        parts.append(part)
    merged = tmp_path / "merged" / "c.duckdb"
    invoke("merge", *parts, "--catalog", merged, "-q")
    same_catalogues(cpu, merged)


def test_every_catalogue_command_runs_on_cuda(tmp_path, planted_folder):
    path = tmp_path / "c.duckdb"
    invoke("ingest", "--data", planted_folder, "--catalog", path, "--device", "cuda", *COMMON)
    base = ["--model", "tests.planted:planted", "--catalog", path, "--device", "cuda"]
    invoke("analyze", "ica", *base, "-q", "--size", "8", "--components", "2")
    invoke("analyze", "filter-tree", *base, "-q", "--label", "red")
    invoke("visualize", *base, "--layer", "0", "--units", "0-1", "--steps", "4", "--size", "32", "-q")
    invoke("gradcam", *base, "--layer", "0", "--units", "0", "--top", "2", "--at", "0", "-q")
    image = next((planted_folder / "red").iterdir())
    invoke("gradcam", image, "--model", "tests.planted:planted", "--layer", "0", "--channel", "0",
           "--catalog", path, "--device", "cuda", "--out", tmp_path / "cam.png")
    invoke("probe", image, "--model", "tests.planted:planted", "--catalog", path, "--device", "cuda")
    assert rows(path, "SELECT count(*) FROM ica_components")[0][0] > 0
    assert rows(path, "SELECT count(*) FROM visualizations")[0][0] > 0
    assert rows(path, "SELECT count(*) FROM probe_activations")[0][0] == 3


def test_self_activation_is_on_by_default_on_cuda():
    from ingest.options import IngestOptions

    assert IngestOptions(device="cuda").wants_self_activation()


def test_color_drop_is_on_by_default_on_cuda():
    from ingest.options import IngestOptions

    assert IngestOptions(device="cuda").wants_color_drop()
