"""`--keep-activations K`: the scan keeps each neuron's spatial max and mean on the first K images (by id)
in one more reducer (ImageActivations), folded like every other by shards, resume and merge; the rows
land in `image_activations` (float16 in the Parquet file); bad values exit 2 before anything is created."""
import glob
import io

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import catalog
import catalog.schema_version
from catalog import SCHEMA_VERSION
from ingest.cli import app
from ingest.data import model_view, open_images, read_rgb
from ingest.network import Network
from ingest.options import keep_activations
from ingest.pipeline import IngestOptions, ingest
from ingest.record import ImageActivations, record, scan_state


def direct(planted_model, images, ids):
    """Spatial max and mean of layer 0 on each image, from the network itself."""
    x = torch.stack([model_view(read_rgb(images.absolute(i)), 32).float() / 255 for i in ids])
    with torch.no_grad():
        out = planted_model.module(x)
    return out.amax(dim=(2, 3)).numpy(), out.mean(dim=(2, 3)).numpy()


def fresh(images, network, k):
    return scan_state(["0"], 5, images, "0", network.device, per_image=True, chunk=3, keep_activations=k)


def test_the_reducer_keeps_the_first_k_images_exactly_however_the_scan_is_folded(planted_folder, planted_model,
                                                                                 fast_options):
    images = open_images(planted_folder)
    network = Network(planted_model, "cpu")
    options = IngestOptions(image_size=32, batch_size=3, workers=0, progress=False, device="cpu")
    k = 7
    mx, mean = direct(planted_model, images, range(k))

    whole = record(network, images, fresh(images, network, k), options)["acts:0"].result()
    assert whole[0].tolist() == list(range(k))
    assert whole[1].dtype == torch.float16
    np.testing.assert_array_equal(whole[1].numpy(), mx.astype(np.float16))
    np.testing.assert_array_equal(whole[2].numpy(), mean.astype(np.float16))

    # shards (odd ids, then even ids with an overlap) merged in either order, and a resume round trip
    odd = record(network, images, fresh(images, network, k), options, ids=[i for i in range(len(images)) if i % 2])
    even = record(network, images, fresh(images, network, k), options, ids=[i for i in range(len(images)) if i % 2 == 0] + [1])
    for first, second in ((odd, even), (even, odd)):
        buffer = io.BytesIO()
        torch.save(first.state_dict(), buffer)
        merged = fresh(images, network, k)
        merged.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
        merged.merge(second)
        got = merged["acts:0"].result()
        assert got[0].tolist() == list(range(k))
        assert torch.equal(got[1], whole[1]) and torch.equal(got[2], whole[2])


def test_kept_values_live_in_host_memory_whatever_the_scan_device(planted_folder, planted_model):
    """One device throughout: the values go to the host per batch, and a merge or a resume into a
    reducer built for another device (here "meta", which holds no data) keeps them there."""
    images = open_images(planted_folder)
    network = Network(planted_model, "cpu")
    options = IngestOptions(image_size=32, batch_size=3, workers=0, progress=False, device="cpu")
    scanned = record(network, images, fresh(images, network, 7), options)["acts:0"]
    expected = scanned.result()
    merged = ImageActivations("0", 7, device="meta")
    merged.merge(scanned)
    resumed = ImageActivations("0", 7, device="meta")
    resumed.load_state_dict(scanned.state_dict())
    for reducer in (scanned, merged, resumed):
        assert {t.device.type for t in reducer.kept.ids + reducer.kept.rows} == {"cpu"}
        got = reducer.result()
        assert all(t.device.type == "cpu" for t in got)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_cuda_each_batch_leaves_the_device(planted_folder, planted_model):
    images = open_images(planted_folder)
    network = Network(planted_model, "cuda")
    options = IngestOptions(image_size=32, batch_size=3, workers=0, progress=False, device="cuda")
    kept = record(network, images, fresh(images, network, None), options)["acts:0"]
    assert {t.device.type for t in kept.kept.rows} == {"cpu"}


def test_k_zero_adds_no_reducer_and_all_keeps_every_image(planted_folder, planted_model):
    images = open_images(planted_folder)
    network = Network(planted_model, "cpu")
    assert not fresh(images, network, 0).image_activations()
    options = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu")
    every = record(network, images, fresh(images, network, None), options)["acts:0"].result()
    assert every[0].tolist() == list(range(len(images)))


def test_ingest_writes_float16_parquet_and_the_table(tmp_path, planted_folder, planted_model, capsys):
    path = tmp_path / "c.duckdb"
    options = IngestOptions(image_size=32, batch_size=8, workers=0, progress=True, device="cpu", keep_activations=12)
    ingest(planted_model, open_images(planted_folder), path, "planted", ["0"], options)
    err = capsys.readouterr().err
    assert "12 images × 3 neurons × 2 bytes × 2 (max, mean) ≈ 0.0 MiB of Parquet" in err
    assert "MiB more catalogue (DuckDB, 4-byte REAL)" in err
    files = glob.glob(str(tmp_path / "neurocat-runs" / "*" / "run-*" / "image_activations.parquet"))
    schema = pq.read_schema(files[0])
    assert str(schema.field("max").type) == "halffloat" and str(schema.field("mean").type) == "halffloat"
    with catalog.open(path, read_only=True) as cat:
        rows = cat.rows("SELECT layer, unit, count(*), min(image_id), max(image_id) FROM image_activations "
                        "GROUP BY ALL ORDER BY ALL")
    assert rows == [("0", u, 12, 0, 11) for u in range(3)]
    # K = 0: off
    options = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", keep_activations=0)
    ingest(planted_model, open_images(planted_folder), path, "planted", ["0"], options)
    with catalog.open(path, read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM image_activations") == [(0,)]


def test_the_estimate_names_the_catalogue_growth_honours_quiet_and_comes_with_shards(tmp_path, planted_folder,
                                                                                     planted_model):
    from ingest.pipeline import DUCKDB_BYTES_PER_KEPT_ROW, activations_estimate

    options = IngestOptions(image_size=32, keep_activations=1000, progress=False)
    line = activations_estimate(planted_model, ["0"], 4000, options)
    assert f"≈ {1000 * 3 * 4 / 2**20:.1f} MiB of Parquet" in line
    assert f"≈ {1000 * 3 * DUCKDB_BYTES_PER_KEPT_ROW / 2**20:.1f} MiB more catalogue" in line
    common = ["--model", "tests.planted:planted", "--layers", "0", "--image-size", "32", "--workers", "0",
              "--keep-activations", "5", "--data", str(planted_folder)]
    runner = CliRunner()
    quiet = runner.invoke(app, ["ingest", *common, "--catalog", str(tmp_path / "q.duckdb"), "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert "--keep-activations:" not in quiet.output
    shard = runner.invoke(app, ["ingest", *common, "--shard", "1/2", "--out", str(tmp_path / "part")])
    assert shard.exit_code == 0, shard.output
    assert "5 images × 3 neurons" in shard.output and "this shard keeps 3 of the images" in shard.output


def test_float16_overflow_is_counted_and_warned_in_one_line(tmp_path, planted_folder, capsys):
    from torch import nn

    from ingest.models import LoadedModel

    conv = nn.Conv2d(3, 2, 3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0] = 1e5  # a planted huge activation: unit 0 far past float16's 65504
        conv.weight[1, 0, 1, 1] = 1.0  # unit 1: its pixel value, finite
    model = LoadedModel(nn.Sequential(conv), "huge", "callable", None, (0.0,) * 3, (1.0,) * 3)
    path = tmp_path / "c.duckdb"
    options = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=5,
                            self_activation=False, bootstrap=0, gamma_null_draws=0, keep_activations=None)
    ingest(model, open_images(planted_folder), path, "huge", ["0"], options)
    warnings_ = [line for line in capsys.readouterr().err.splitlines() if "not finite" in line]
    with catalog.open(path, read_only=True) as cat:
        stored = cat.rows("SELECT unit, count(*) FILTER (NOT isfinite(max)) + count(*) FILTER (NOT isfinite(mean)) "
                          "FROM image_activations GROUP BY unit ORDER BY unit")
    assert stored[1] == (1, 0) and stored[0][1] > 0
    assert warnings_ == [warnings_[0]] and f"layer 0: {stored[0][1]}" in warnings_[0]
    assert warnings_[0].startswith(f"warning: {stored[0][1]} kept activations are not finite")


@pytest.mark.parametrize("value", ["-3", "many", "1.5"])
def test_bad_values_exit_2_with_one_line_before_anything_is_created(tmp_path, planted_folder, value):
    path = tmp_path / "c.duckdb"
    result = CliRunner().invoke(app, ["ingest", "--model", "resnet18", "--data", str(planted_folder),
                                      "--catalog", str(path), "--keep-activations", value])
    assert result.exit_code == 2
    assert "--keep-activations" in result.output and len(result.output.strip().splitlines()) == 1
    assert not path.exists()


def test_the_option_reads_counts_zero_and_all():
    assert keep_activations("2000") == 2000 and keep_activations("0") == 0
    assert keep_activations("all") is None and keep_activations("ALL") is None


def test_a_version_4_catalogue_migrates_to_the_matching_tables(tmp_path):
    path = tmp_path / "old.duckdb"
    catalog.open(path).close()
    con = duckdb.connect(str(path))
    for table in ("image_activations", "unit_matches", "layer_cka"):
        con.execute(f"DROP TABLE {table}")
    con.execute("UPDATE catalog_info SET schema_version = 4")
    con.close()
    assert SCHEMA_VERSION == 5
    with pytest.raises(catalog.SchemaVersionError, match="migrate"):
        catalog.open(path)
    changes = catalog.migrate(path)
    assert {"added table image_activations", "added table unit_matches", "added table layer_cka",
            "schema version 4 -> 5"} <= set(changes)
    with catalog.open(path, read_only=True) as cat:
        assert {"image_activations", "unit_matches", "layer_cka"} <= set(cat.tables())
