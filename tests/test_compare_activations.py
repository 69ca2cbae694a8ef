"""`neurocat compare --activations` on ingested networks whose answer is known: a network and the same
network with its channels permuted (outputs equal) match unit for unit at r = 1 with CKA 1 on the
matching layers; two independently seeded networks share no pair above the view's threshold. The
rows are stored atomically and replaced; bad input exits 2 with one line; the site and `plot` show them."""
import html
import re
import urllib.parse
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import catalog
from catalog.compare import MATCH_THRESHOLD
from catalog.site import prepare, running
from ingest.cli import app
from ingest.data import open_images
from ingest.models import LoadedModel
from ingest.pipeline import IngestOptions, ingest
from tests.test_matching import net, permuted

PERM0 = torch.randperm(12, generator=torch.Generator().manual_seed(1))
PERM2 = torch.randperm(16, generator=torch.Generator().manual_seed(2))


def noise_images(root, n=60, size=16, seed=0):
    """An ImageFolder of uniform noise (two classes): images on which random units rarely agree by chance."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / ("x" if i % 2 else "y")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return root


def loaded(module, name):
    return LoadedModel(module, name, "callable", None, (0.0,) * 3, (1.0,) * 3)


def options(k=None):
    return IngestOptions(image_size=16, batch_size=16, workers=0, progress=False, device="cpu", top_n=5,
                         self_activation=False, bootstrap=0, gamma_null_draws=0, keep_activations=k)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ingest_networks(path, images, networks):
    """Ingest each (name, module, K) into the catalogue at ``path``, on layers 0, 2 and 4."""
    for name, module, k in networks:
        ingest(loaded(module, name), images, path, name, ["0", "2", "4"], options(k))


def permuted_pair_and_other():
    """("a", its channel-permuted copy "perm", an unrelated seeded "other"), as ``ingest_networks`` takes them."""
    a = net(0)
    return (("a", a, None), ("perm", permuted(a, PERM0, PERM2), None), ("other", net(1), None))


@pytest.fixture(scope="module")
def cat_path(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("match")
    images = open_images(noise_images(tmp / "noise"))
    path = tmp / "c.duckdb"
    ingest_networks(path, images, permuted_pair_and_other() + (("off", net(2), 0), ("fewer", net(3), 20)))
    ingest_networks(path, open_images(noise_images(tmp / "noise2", n=40, seed=1)), (("elsewhere", net(4), None),))
    return path


def test_a_permuted_copy_matches_unit_for_unit_at_r_1_and_cka_1(cat_path):
    result = run("compare", "a", "perm", "--activations", "--catalog", cat_path, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "by activation" in result.output
    with catalog.open(cat_path, read_only=True) as cat:
        pairs = cat.rows("SELECT layer_a, unit_a, layer_b, unit_b, correlation FROM unit_matches "
                         "WHERE model_a = 'a' AND model_b = 'perm' AND kind = 'one_to_one'")
        for layer, perm in (("0", PERM0), ("2", PERM2)):
            got = {ua: (lb, ub) for la, ua, lb, ub, _ in pairs if la == layer}
            assert got == {int(perm[j]): (layer, j) for j in range(len(perm))}
        assert all(r == pytest.approx(1, abs=1e-3) for *_, r in pairs)
        cka = cat.rows("SELECT layer_a, layer_b, cka FROM layer_cka WHERE model_a = 'a' AND model_b = 'perm'")
        assert len(cka) == 9
        assert all(c == pytest.approx(1, abs=1e-3) for la, lb, c in cka if la == lb)
        assert all(c < 0.99 for la, lb, c in cka if la != lb)
        # each model with itself, too
        assert cat.rows("SELECT count(*) FROM layer_cka WHERE model_a = model_b AND model_a IN ('a', 'perm')") == [(18,)]
        partners = cat.rows("SELECT count(*), min(correlation) FROM one_to_one_partners WHERE model_a = 'a' "
                            "AND model_b = 'perm' AND nf_png_a IS NOT NULL AND nf_png_b IS NOT NULL")
        live = cat.rows("SELECT count(*) FROM units WHERE model = 'a' AND NOT dead")[0][0]
        assert partners[0][0] == live and partners[0][1] > MATCH_THRESHOLD
        best = cat.rows("SELECT count(*) FROM best_match WHERE model_a = 'a' AND model_b = 'perm' "
                        "AND correlation IS NOT NULL AND r_layer_b = layer_a")
        assert best[0][0] > 0
    # run again: the same rows, replaced, not added
    with catalog.open(cat_path, read_only=True) as cat:
        before = cat.rows("SELECT count(*) FROM unit_matches")
    assert run("compare", "a", "perm", "--activations", "--catalog", cat_path).exit_code == 0
    with catalog.open(cat_path, read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM unit_matches") == before


def test_independently_seeded_networks_have_no_partner_above_the_threshold(cat_path):
    assert run("compare", "a", "other", "--activations", "--catalog", cat_path).exit_code == 0
    with catalog.open(cat_path, read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM one_to_one_partners WHERE model_a = 'a' AND model_b = 'other'") == [(0,)]
        other = dict(((la, lb), c) for la, lb, c in cat.rows(
            "SELECT layer_a, layer_b, cka FROM layer_cka WHERE model_a = 'a' AND model_b = 'other'"))
    assert max(other[(layer, layer)] for layer in ("0", "2", "4")) < 0.8  # the permuted copy: 1


@pytest.mark.parametrize("args, words", [
    (("a", "elsewhere"), "share no data set"),
    (("a", "off"), "--keep-activations 0"),
    (("a", "fewer"), "did not keep the same probe images"),
    (("a", "perm", "--layers-a", "nope"), "valid: 0, 2, 4"),
    (("a", "perm", "--measure", "median"), "--measure"),
    (("a", "a"), "two different models"),
])
def test_bad_input_exits_2_with_one_line(cat_path, args, words):
    with catalog.open(cat_path, read_only=True) as cat:
        before = cat.rows("SELECT count(*) FROM unit_matches")
    result = run("compare", *args, "--activations", "--catalog", cat_path)
    assert result.exit_code == 2, result.output
    assert words in result.output and len(result.output.strip().splitlines()) == 1, result.output
    with catalog.open(cat_path, read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM unit_matches") == before  # nothing half-written


@pytest.mark.parametrize("args, flags", [
    (("--layers-a", "0"), "--layers-a needs"),
    (("--layers-b", "2"), "--layers-b needs"),
    (("--measure", "mean"), "--measure needs"),
    (("--device", "cpu"), "--device needs"),
    (("--layers-a", "0", "--measure", "mean"), "--layers-a, --measure need"),
])
def test_activation_options_without_activations_exit_2(cat_path, args, flags):
    result = run("compare", "a", "perm", *args, "--catalog", cat_path)
    assert result.exit_code == 2, result.output
    assert f"{flags} --activations" in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_layer_lists_of_equal_length_choose_the_one_to_one_pairs(cat_path):
    result = run("compare", "a", "perm", "--activations", "--layers-a", "0,2", "--layers-b", "2,0",
                 "--catalog", cat_path, "--device", "cpu")
    assert result.exit_code == 0, result.output
    with catalog.open(cat_path, read_only=True) as cat:
        pairs = cat.rows("SELECT DISTINCT layer_a, layer_b FROM unit_matches WHERE model_a = 'a' AND model_b = 'perm' "
                         "AND kind = 'one_to_one' ORDER BY 1")
    assert pairs == [("0", "2"), ("2", "0")]  # not the most-voted (0, 0) and (2, 2)
    assert run("compare", "a", "perm", "--activations", "--catalog", cat_path).exit_code == 0  # as the others expect


def test_plot_compare_writes_the_heatmap(cat_path, tmp_path):
    assert run("compare", "a", "perm", "--activations", "--catalog", cat_path).exit_code == 0
    result = run("plot", "--model", "a", "--compare", "perm", "--catalog", cat_path, "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    png = tmp_path / "a-perm-noise-cka.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    # the other way round: the same CKA, transposed
    result = run("plot", "--model", "perm", "--compare", "a", "--catalog", cat_path, "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "perm-a-noise-cka.png").read_bytes().startswith(b"\x89PNG")
    missing = run("plot", "--model", "a", "--compare", "fewer", "--catalog", cat_path, "--out-dir", tmp_path)
    assert missing.exit_code == 2 and "compare a fewer --activations" in missing.output


def test_the_site_shows_partners_and_the_cka_heatmap(cat_path):
    assert run("compare", "a", "perm", "--activations", "--catalog", cat_path).exit_code == 0
    db, metadata, _ = prepare(cat_path)
    with running(db, metadata, timeout=60) as base:
        query = urllib.parse.urlencode({"model": "perm", "dataset": "noise", "layer": "2", "unit": 0})
        page = urllib.request.urlopen(f"{base}/-/neuron?{query}", timeout=30).read().decode()
        # the partner in model a is unit PERM2[0] of layer 2: its exact link, inside the partners table
        partners = page.split('<table id="partners">', 1)[1].split("</table>", 1)[0]
        links = [html.unescape(h) for h in re.findall(r'<a href="([^"]+)"', partners)]
        expected = "/-/neuron?" + urllib.parse.urlencode({"model": "a", "dataset": "noise", "layer": "2",
                                                          "unit": int(PERM2[0])})
        assert expected in links, links
        model = urllib.request.urlopen(f"{base}/-/model?model=a&dataset=noise", timeout=30).read().decode()
        assert "/-/model/cka.png?" in model and "perm" in model
        png = urllib.request.urlopen(f"{base}/-/model/cka.png?model=a&other=perm&dataset=noise", timeout=30).read()
        assert png.startswith(b"\x89PNG")


def test_the_published_copy_indexes_the_partner_and_cka_lookups(cat_path, tmp_path):
    import sqlite3

    from catalog import plots
    from catalog.datasette.neurocat_pages import PARTNERS_SQL
    from catalog.publish import publish

    assert run("compare", "a", "perm", "--activations", "--catalog", cat_path).exit_code == 0
    lite = sqlite3.connect(publish(cat_path, tmp_path / "site.db"))

    def plan(sql, args):
        return " ".join(str(r[-1]) for r in lite.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall())

    assert "USING INDEX idx_unit_matches_dataset_model_a_layer_a_unit_a" in plan(PARTNERS_SQL, ["noise", "a", "2", 0])
    for model, other in (("a", "perm"), ("perm", "a")):  # stored as a × perm; perm × a reads it transposed
        for steps in (plan(plots.CKA_SQL, plots.cka_args(model, other, "noise")),
                      plan(plots.CKA_OTHERS_SQL, plots.cka_others_args(model, "noise"))):
            assert steps.count("SEARCH layer_cka USING") == 2 and "SCAN layer_cka" not in steps, steps
            assert "idx_layer_cka_model_" in steps, steps
    assert lite.execute("SELECT count(*) FROM layer_cka WHERE model_a = 'a' AND model_b = 'perm'").fetchone() == (9,)


def test_re_ingesting_a_model_drops_its_comparisons(cat_path, tmp_path):
    assert run("compare", "a", "other", "--activations", "--catalog", cat_path).exit_code == 0
    images = open_images(cat_path.parent / "noise")
    ingest(loaded(net(1), "other"), images, cat_path, "other", ["0", "2", "4"], options())
    with catalog.open(cat_path, read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM unit_matches WHERE 'other' IN (model_a, model_b)") == [(0,)]
        assert cat.rows("SELECT count(*) FROM layer_cka WHERE 'other' IN (model_a, model_b)") == [(0,)]
        assert cat.rows("SELECT count(*) FROM unit_matches WHERE model_a = 'a' AND model_b = 'perm'")[0][0] > 0
