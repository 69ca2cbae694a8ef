"""The compare page (/-/compare?dataset=&a=&b=) in a real Datasette server opened in Debian's Chromium: on a
network and its channel-permuted copy it shows the layer CKA heatmap, a layer table whose numbers are the
catalogue's, and the strongest one-to-one pairs recovering the planted permutation with both NFs; an
unknown or never-compared pair is a 404 with one line and the compared pairs. The published copy's
indexes serve every lookup."""
import html
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import catalog
from catalog.compare import MATCH_THRESHOLD
from catalog.datasette.neurocat_pages import (COMPARE_LAYERS_SQL, COMPARE_PAIRS_SQL, COMPARED_PAIRS_SQL,
                                              COMPARED_SQL, TOP_PAIRS, compare_layers_args)
from catalog.publish import publish
from catalog.site import prepare, running
from ingest.data import open_images
from tests.test_compare_activations import (PERM0, PERM2, ingest_networks, noise_images, permuted_pair_and_other,
                                           run)
from tests.test_site import CHROMIUM, browser, open_page  # noqa: F401  (the browser fixture)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
PERMS = {"0": [int(p) for p in PERM0], "2": [int(p) for p in PERM2], "4": list(range(8))}  # a's unit PERMS[l][j] = perm's j


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare_page")
    images = open_images(noise_images(tmp / "noise"))
    path = tmp / "c.duckdb"
    ingest_networks(path, images, permuted_pair_and_other())
    result = run("compare", "a", "perm", "--activations", "--catalog", path, "--device", "cpu")
    assert result.exit_code == 0, result.output
    db, metadata, _ = prepare(path)
    with running(db, metadata, timeout=60) as base:
        yield {"base": base, "duckdb": path, "db": db}


def url(base, **args):
    return f"{base}/-/compare?" + urllib.parse.urlencode(args)


def expected_layers(cat, a, b):
    """Per layer of a, from the catalogue in Python: (layer, b's layer of highest CKA, its CKA, units with a
    one-to-one partner above the threshold, live units, mean r of the best matches). layer_cka holds one
    direction of the pair; CKA is symmetric."""
    cka = {(la, lb): c for la, lb, c in cat.rows("SELECT layer_a, layer_b, cka FROM layer_cka WHERE model_a = ? "
                                                 "AND model_b = ?", [a, b])}
    cka.update({(la, lb): c for lb, la, c in cat.rows("SELECT layer_a, layer_b, cka FROM layer_cka WHERE model_a = ? "
                                                      "AND model_b = ?", [b, a])})
    out = []
    for layer, in cat.rows("SELECT layer FROM layers WHERE model = ? AND dataset = 'noise' ORDER BY layer_index", [a]):
        layer_b, best_cka = max(((lb, c) for (la, lb), c in cka.items() if la == layer), key=lambda r: r[1])
        one = cat.rows("SELECT unit_a, correlation FROM unit_matches WHERE model_a = ? AND model_b = ? "
                       "AND layer_a = ? AND kind = 'one_to_one'", [a, b, layer])
        best = [r for r, in cat.rows("SELECT correlation FROM unit_matches WHERE model_a = ? AND model_b = ? "
                                     "AND layer_a = ? AND kind = 'best'", [a, b, layer])]
        live = cat.rows("SELECT count(*) FROM units WHERE model = ? AND dataset = 'noise' AND layer = ? "
                        "AND NOT dead", [a, layer])[0][0]
        out.append((layer, layer_b, best_cka, len({u for u, r in one if r > MATCH_THRESHOLD}), live,
                    sum(best) / len(best)))
    return out


@pytest.mark.parametrize("a, b", [("a", "perm"), ("perm", "a")])  # as compared, and the other way round
def test_the_compare_page_shows_heatmap_layer_table_and_the_planted_permutation(site, browser, a, b):  # noqa: F811
    page = open_page(browser, url(site["base"], dataset="noise", a=a, b=b))
    page.wait_for_function("document.querySelector('#heatmap').complete", timeout=15000)
    assert page.eval_on_selector("#heatmap", "e => e.naturalWidth") > 0
    assert page.eval_on_selector("#heatmap", "e => e.naturalHeight") > 0

    rows = page.eval_on_selector_all("#compare-layers tbody tr", """els => els.map(e => [e.dataset.layer,
        e.querySelector('.layer-b').textContent, e.querySelector('.cka').dataset.value,
        e.querySelector('.above').textContent, e.querySelector('.live').textContent,
        e.querySelector('.mean-r').dataset.value])""")
    with catalog.open(site["duckdb"], read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM layer_cka WHERE model_a = 'perm' AND model_b = 'a'") == [(0,)]
        expected = expected_layers(cat, a, b)
    assert [(la, lb, float(c), int(n), int(live), float(r)) for la, lb, c, n, live, r in rows] == [
        (la, lb, pytest.approx(c, abs=1e-9), n, live, pytest.approx(r, abs=1e-9)) for la, lb, c, n, live, r in expected]
    # the permuted copy: each layer's own copy, CKA 1, every live unit partnered
    assert all(la == lb and c == pytest.approx(1, abs=1e-3) and n == live and n > 0 for la, lb, c, n, live, _ in expected)

    pairs = page.eval_on_selector_all("figure.pair", """els => els.map(e => [e.dataset.layerA, +e.dataset.unitA,
        e.dataset.layerB, +e.dataset.unitB, e.querySelector('a.a').getAttribute('href'),
        e.querySelector('a.b').getAttribute('href')])""")
    assert len(pairs) == TOP_PAIRS
    for layer_a, unit_a, layer_b, unit_b, href_a, href_b in pairs:
        unit_of_a, unit_of_perm = (unit_a, unit_b) if a == "a" else (unit_b, unit_a)
        assert layer_a == layer_b and unit_of_a == PERMS[layer_a][unit_of_perm], (layer_a, unit_a, layer_b, unit_b)
        assert href_a == "/-/neuron?" + urllib.parse.urlencode({"model": a, "dataset": "noise", "layer": layer_a,
                                                                "unit": unit_a})
        assert href_b == "/-/neuron?" + urllib.parse.urlencode({"model": b, "dataset": "noise", "layer": layer_b,
                                                                "unit": unit_b})
    page.wait_for_function("[...document.querySelectorAll('figure.pair img.nf')].every(e => e.complete)", timeout=15000)
    widths = page.eval_on_selector_all("figure.pair img.nf", "els => els.map(e => e.naturalWidth)")
    assert len(widths) == 2 * TOP_PAIRS and all(w > 0 for w in widths), widths
    # both neuron pages open, and name each other as partners
    first = pairs[0]
    neuron = urllib.request.urlopen(site["base"] + first[5], timeout=30).read().decode()
    partners = neuron.split('<table id="partners">', 1)[1].split("</table>", 1)[0]
    assert first[4] in [html.unescape(h) for h in re.findall(r'<a href="([^"]+)"', partners)]
    page.close()


@pytest.mark.parametrize("args", [{"dataset": "noise", "a": "a", "b": "other"},   # never compared
                                  {"dataset": "noise", "a": "a", "b": "nope"},    # unknown model
                                  {"dataset": "elsewhere", "a": "a", "b": "perm"},
                                  {"dataset": "noise", "a": "a", "b": "a"},
                                  {"a": "a"}])
def test_an_unknown_or_never_compared_pair_is_a_404_with_one_line(site, args):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url(site["base"], **args), timeout=30)
    assert err.value.code == 404
    body = err.value.read().decode()
    message = re.search(r'<p class="message" id="message">([^<]*)</p>', body).group(1)
    assert "no layer CKA of" in message and "--activations" in message and "\n" not in message
    listed = [html.unescape(h) for h in re.findall(r'<a href="(/-/compare\?[^"]+)"', body)]
    assert url("", dataset="noise", a="a", b="perm") in listed


def test_the_model_and_front_pages_link_to_the_compare_page(site):
    link = html.escape(url("", dataset="noise", a="a", b="perm"))
    for a, b in (("a", "perm"), ("perm", "a")):  # each model's page, whichever way the pair was compared
        model = urllib.request.urlopen(f"{site['base']}/-/model?model={a}&dataset=noise", timeout=30).read().decode()
        assert f'href="{html.escape(url("", dataset="noise", a=a, b=b))}"' in model
        heatmap = re.search(r'<img class="cka" src="([^"]+)"', model).group(1)
        assert urllib.request.urlopen(site["base"] + html.unescape(heatmap), timeout=30).read().startswith(b"\x89PNG")
    front = urllib.request.urlopen(f"{site['base']}/", timeout=30).read().decode()
    assert f'href="{link}"' in front


def test_the_published_copy_indexes_the_compare_page(site, tmp_path):
    lite = sqlite3.connect(publish(site["duckdb"], tmp_path / "site.db"))

    def plan(sql, args):
        return [str(r[-1]) for r in lite.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()]

    layers = plan(COMPARE_LAYERS_SQL, compare_layers_args("perm", "a", "noise"))
    for sql, args in ((COMPARE_PAIRS_SQL, ["noise", "a", "perm", TOP_PAIRS]),
                      (COMPARED_SQL, ["a", "noise", "perm", "a", "noise", "perm"]), (COMPARED_PAIRS_SQL, [])):
        steps = plan(sql, args)
        assert any("INDEX" in s for s in steps) and not any(re.fullmatch(r"SCAN \w+", s) for s in steps), steps
    scanned = [s for s in layers if re.match(r"SCAN (unit_matches|layer_cka|layers)\b", s) and "INDEX" not in s]
    assert not scanned, layers
    assert any("idx_unit_matches_dataset_model_a_model_b_kind_layer_a_unit_a_correlation" in s for s in layers), layers
    # both directions of layer_cka: an index search on all three columns
    assert [s for s in layers if "layer_cka" in s] == [s for s in layers if re.fullmatch(
        r"SEARCH layer_cka USING INDEX idx_layer_cka_\w+ \(model_\w=\? AND dataset=\? AND model_\w=\?\)", s)], layers
    assert sum("layer_cka" in s for s in layers) == 2, layers
