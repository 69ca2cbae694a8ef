"""Class hierarchies: WordNet chains for ImageNet ids, a toy hierarchy, γ rolled up to generic classes."""
import pytest
import torch
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.data import open_images
from ingest.labels import hierarchy_rows, imagenet_classes
from ingest.models import LoadedModel
from ingest.pipeline import IngestOptions, ingest
from tests.planted import planted

COLOURFUL = 2  # the third channel, made to answer red and blue squares alike


def colourful():
    """RED, EDGE, and a channel of (R + B − 2G) / 25: red and blue squares both give 9/25."""
    net = planted()
    with torch.no_grad():
        w = net[0].weight
        w[COLOURFUL] = 0
        w[COLOURFUL, 0] = w[COLOURFUL, 2] = 1 / 25
        w[COLOURFUL, 1] = -2 / 25
        net[0].bias[COLOURFUL] = 0
    return net


def test_wordnet_chain_of_tench_by_hand():
    rows = hierarchy_rows(["n01440764"])
    assert rows[0] == ("n01440764", "n01440764", 0, "tench")
    assert rows[1] == ("n01440764", "n01439121", 1, "cyprinid")
    assert ("n01440764", "n02512053", 6, "fish") in rows
    assert rows[-1][1:] == ("n00001740", 16, "entity")  # the root
    assert hierarchy_rows(["circle"]) == [("circle", "circle", 0, "circle")]  # not a WordNet id: its own root
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[0] == "n01440764" and classes[999] == "n15075141"


@pytest.fixture
def toy(tmp_path, planted_folder):
    path = tmp_path / "c.duckdb"
    model = LoadedModel(colourful().eval(), "m", "callable", None, (0.0,) * 3, (1.0,) * 3)
    ingest(model, open_images(planted_folder), path, "m", ["0"],
           IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=20))
    csv = tmp_path / "toy.csv"
    csv.write_text("child,parent,name\nred,colour,coloured square\nblue,colour,coloured square\nbars,pattern,"
                   "\ncolour,thing,\npattern,thing,\nthing,,everything\n")
    r = CliRunner().invoke(app, ["analyze", "label-hierarchy", "--dataset", "planted", "--file", str(csv),
                                 "--catalog", str(path)])
    assert r.exit_code == 0, r.output
    return path


def test_two_leaves_under_one_parent_have_m_1_at_the_parent(toy):
    with catalog.open(toy, read_only=True) as cat:
        rolled = {d: (m, g, top) for d, m, g, top in cat.rows(
            "SELECT depth, m, gamma, top_ancestor FROM rolled_up_gamma WHERE unit = ? ORDER BY depth",
            [COLOURFUL])}
        gamma = cat.rows("SELECT gamma, gamma_m FROM neurons WHERE unit = ?", [COLOURFUL])[0]
        depth0 = cat.rows("SELECT r.unit, r.gamma, n.gamma FROM rolled_up_gamma r JOIN neurons n "
                          "USING (model, dataset, layer, unit) WHERE r.depth = 0")
        cloud = dict(cat.rows("SELECT ancestor, count FROM rolled_up_class_frequencies WHERE unit = ?",
                              [COLOURFUL]))
    # Top 20 = the 10 red and 10 blue images, equal weights: M = 2 classes, γ = (20 − 2) / 19 ...
    assert gamma == (pytest.approx(18 / 19), 2) and rolled[0][:2] == (2, pytest.approx(18 / 19))
    # ... but one generic class "colour": M = 1, γ = 1; and at the root too.
    assert rolled[1] == (1, 1.0, "colour") and rolled[2] == (1, 1.0, "thing")
    assert all(r[1] == pytest.approx(r[2]) or (r[1] is None and r[2] is None) for r in depth0)
    assert cloud == {"red": 10, "blue": 10, "colour": 20, "thing": 20}


def test_a_given_hierarchy_outlives_a_re_ingest(toy, planted_folder):
    model = LoadedModel(colourful().eval(), "m", "callable", None, (0.0,) * 3, (1.0,) * 3)
    ingest(model, open_images(planted_folder), toy, "m", ["0"],
           IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=20))
    with catalog.open(toy, read_only=True) as cat:
        assert cat.rows("SELECT max(depth) FROM label_hierarchy")[0][0] == 2


def test_ingest_writes_wordnet_chains_for_imagenet_ids(tmp_path):
    import numpy as np
    from PIL import Image

    for wnid in ("n01440764", "n01443537"):  # tench, goldfish
        (tmp_path / "d" / wnid).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(tmp_path / "d" / wnid / f"{i}.png")
    model = LoadedModel(planted().eval(), "p", "callable", None, (0.0,) * 3, (1.0,) * 3)
    ingest(model, open_images(tmp_path / "d"), tmp_path / "c.duckdb", "p", ["0"],
           IngestOptions(image_size=16, batch_size=4, workers=0, progress=False, device="cpu", top_n=4))
    with catalog.open(tmp_path / "c.duckdb", read_only=True) as cat:
        common = cat.rows("SELECT name, min(depth) FROM label_hierarchy GROUP BY ancestor, name "
                          "HAVING count(DISTINCT label) = 2 ORDER BY 2 LIMIT 1")[0]
    assert common == ("cyprinid", 1)  # tench and goldfish are both carps
