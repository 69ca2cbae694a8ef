"""Cross-model views and `neurocat compare` on two planted networks with known top-image overlaps.

Data: 10 red, 10 blue, 10 bars images (ids: bars 0-9, blue 10-19, red 20-29).
Model "a" = the planted net (RED, EDGE, DEAD), top 10: RED's top images are the 10 red ones,
EDGE's the 10 bars. Model "b" = RED, EDGE and a BLUE detector, top 5: five red, five bars, five blue.
So |a.RED ∩ b.RED| = 5 and Jaccard = 5 / (10 + 5 − 5) = 0.5; likewise EDGE; BLUE shares nothing.
"""
import json

import pytest
import torch
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.data import open_images
from ingest.models import LoadedModel
from ingest.pipeline import IngestOptions, ingest
from tests.planted import DEAD, EDGE, RED, planted

BLUE = DEAD  # model b's third channel


def with_blue_detector():
    net = planted()
    with torch.no_grad():
        conv = net[0]
        conv.weight[BLUE] = 0
        conv.weight[BLUE, 2] = 1 / 25
        conv.weight[BLUE, 0] = conv.weight[BLUE, 1] = -0.5 / 25
        conv.bias[BLUE] = 0
    return net


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    from tests.conftest import planted_images

    tmp = tmp_path_factory.mktemp("compare")
    images = open_images(planted_images(tmp / "data"))
    path = tmp / "c.duckdb"
    for name, net, top_n in (("a", planted(), 10), ("b", with_blue_detector(), 5)):
        model = LoadedModel(net.eval(), name, "callable", None, (0.0,) * 3, (1.0,) * 3)
        ingest(model, images, path, name, ["0"],
               IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=top_n))
    return path


def test_top_image_sets_are_the_planted_ones(two_models):
    with catalog.open(two_models, read_only=True) as cat:
        tops = dict(cat.rows("SELECT model || unit, list(i.label ORDER BY rank) FROM top_images t "
                             "JOIN images i USING (dataset, image_id) WHERE model || unit IN "
                             "('a0', 'a1', 'b0', 'b1', 'b2') GROUP BY 1"))
    assert tops["a0"] == ["red"] * 10 and tops["a1"] == ["bars"] * 10
    assert tops["b0"] == ["red"] * 5 and tops["b1"] == ["bars"] * 5 and tops["b2"] == ["blue"] * 5


def test_overlap_and_best_match_are_hand_computed(two_models):
    with catalog.open(two_models, read_only=True) as cat:
        shared = cat.rows("SELECT count(*) FROM shared_top_images WHERE model_a = 'a' AND unit_a = ? "
                          "AND model_b = 'b' AND unit_b = ?", [RED, RED])[0][0]
        overlap = cat.rows("SELECT unit_a, unit_b, shared, n_a, n_b, jaccard FROM neuron_overlap "
                           "WHERE model_a = 'a' ORDER BY 1, 2")
        best = cat.rows("SELECT model_a, unit_a, unit_b, jaccard FROM best_match ORDER BY 1, 2")
    assert shared == 5
    assert overlap == [(RED, RED, 5, 10, 5, 0.5), (EDGE, EDGE, 5, 10, 5, 0.5)]
    # b's BLUE detector shares no top image with a: no row; a's dead neuron takes no part.
    assert best == [("a", RED, RED, 0.5), ("a", EDGE, EDGE, 0.5), ("b", RED, RED, 0.5), ("b", EDGE, EDGE, 0.5)]


def test_compare_prints_both_models_side_by_side(two_models):
    runner = CliRunner()
    r = runner.invoke(app, ["compare", "a", "b", "--catalog", str(two_models), "--format", "json"])
    assert r.exit_code == 0, r.output
    sections = json.loads(r.stdout)
    assert set(sections) == {"layers", "a -> b", "b -> a"} and sections["a -> b"][0]["mean_jaccard"] == 0.5
    r = runner.invoke(app, ["compare", "a", "b", "--catalog", str(two_models)])
    assert r.exit_code == 0 and "-- a -> b" in r.stdout and "-- b -> a" in r.stdout, r.output
    with catalog.open(two_models, read_only=True) as cat:
        from catalog.compare import compare

        out = compare(cat, "a", "b")
    assert out["layers"].column("model").to_pylist() == ["a", "b"]
    a_to_b = out["a -> b"].to_pylist()[0]
    assert a_to_b["matched"] == 2 and a_to_b["live"] == 2 and a_to_b["mean_jaccard"] == 0.5
    assert out["b -> a"].to_pylist()[0]["matched"] == 2 and out["b -> a"].to_pylist()[0]["live"] == 3
    r = runner.invoke(app, ["compare", "a", "nope", "--catalog", str(two_models)])
    assert r.exit_code == 2 and "share no data set" in r.output
