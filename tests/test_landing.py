"""The catalogue's front page (/) in a real Datasette, opened in Debian's Chromium via Playwright.

Two models on two data sets, one pair missing: "planted" on `shapes` (its red channel is colour- and
class-selective) and on `nored` (no red image: that channel is dead), "twin" on `shapes` only. Whatever the
page shows for a run must be what DuckDB says for that (model, dataset).
"""
import dataclasses
import json
import re
import shutil
import urllib.parse
from pathlib import Path

import pytest

import catalog
from catalog.site import prepare, running
from tests.test_site import CHROMIUM, browser, get, open_page, wait_for_images  # noqa: F401 - browser is a fixture

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
RUNS = [("planted", "nored"), ("planted", "shapes"), ("twin", "shapes")]
# The mission with γ's significance and α's interval; "twin" is ingested without them (NULLs) and asks with γ and α.
SURE = "gamma > 0.9 AND gamma_p < 0.01 AND alpha_lo > 0.5"
UNSURE = "gamma > 0.9 AND alpha > 0.5"
CONDITION = {("planted", "nored"): SURE, ("planted", "shapes"): SURE, ("twin", "shapes"): UNSURE}
INPUTS = {SURE: {"gamma": "0.9", "gamma_p": "0.01", "alpha_lo": "0.5"}, UNSURE: {"gamma": "0.9", "alpha": "0.5"}}


def mission_sql(condition):
    return (f"SELECT unit FROM neurons WHERE model = ? AND dataset = ? AND layer = ? AND {condition} "
            "ORDER BY gamma DESC, alpha DESC")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from ingest.data import open_images
    from ingest.models import LoadedModel
    from ingest.pipeline import IngestOptions, ingest
    from tests.conftest import planted_images
    from tests.planted import planted

    tmp = tmp_path_factory.mktemp("landing")
    shapes = planted_images(tmp / "shapes")
    nored = planted_images(tmp / "nored", seed=1)
    shutil.rmtree(nored / "red")
    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=8)
    path = tmp / "c.duckdb"
    for name, folder in (("planted", shapes), ("planted", nored)):
        ingest(model, open_images(folder), path, name, ["0"], opts)
    ingest(model, open_images(shapes), path, "twin", ["0"], dataclasses.replace(opts, gamma_null_draws=0, bootstrap=0))
    db, metadata, _ = prepare(path)
    with running(db, metadata, timeout=60) as base:
        yield {"base": base, "path": path, "name": db.stem}


def duck(site, sql, params=()):
    with catalog.open(site["path"], read_only=True) as cat:
        return cat.rows(sql, list(params))


def test_models_by_data_sets_with_neuron_counts(site):
    html = get(site["base"] + "/")[1].decode()
    cells = re.findall(r'<a class="run-link" href="([^"]+)" data-model="([^"]+)" data-dataset="([^"]+)">([\d,]+) neurons</a>',
                       html)
    counts = dict(((m, d), n) for m, d, n in duck(site, "SELECT model, dataset, n_neurons FROM models"))
    assert sorted((m, d) for _, m, d, _ in cells) == RUNS
    for href, model, dataset, n in cells:
        assert int(n.replace(",", "")) == counts[(model, dataset)]
        assert urllib.parse.parse_qs(href.replace("&amp;", "&").split("?")[1]) == {"model": [model], "dataset": [dataset]}
    grid = re.search(r'<table class="runs" id="runs">(.*?)</table>', html, re.S).group(1)
    assert grid.count("<td>–</td>") == 1  # twin was never ingested on nored
    assert site["name"] in json.loads(get(site["base"] + "/.json")[1])  # Datasette's own index stays at /.json


def test_mission_query_from_the_landing_page_returns_duckdbs_rows(site, browser):  # noqa: F811
    answers = {}
    for model, dataset in RUNS:
        page = open_page(browser, site["base"] + "/")
        section = page.locator(f"section.run[data-model='{model}'][data-dataset='{dataset}']")
        assert section.count() == 1
        form = section.locator("form.mission")
        layer = form.locator("select[name=layer]").input_value()
        condition = CONDITION[(model, dataset)]
        assert section.locator("code.mission-condition").inner_text() == condition
        assert dict(form.locator("input:not([type=hidden]):not([type=submit])").evaluate_all(
            "els => els.map(e => [e.name, e.value])")) == INPUTS[condition]
        assert section.locator("p.mission-fallback").count() == (condition == UNSURE)
        # the count beside each layer is DuckDB's, and the form opens on the layer with the most answers
        hits = dict(duck(site, f"SELECT layer, COUNT(*) FROM neurons WHERE model = ? AND dataset = ? AND {condition} "
                               "GROUP BY layer", [model, dataset]))
        shown = form.locator("option").evaluate_all("els => els.map(e => [e.value, Number(e.dataset.hits)])")
        assert {k: v for k, v in shown if v} == hits
        assert hits.get(layer, 0) == max([0, *hits.values()])
        form.locator("input[type=submit]").click()
        page.wait_for_load_state()
        query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
        assert query["model"] == [model] and query["dataset"] == [dataset] and query["layer"] == [layer]
        units = page.eval_on_selector_all("table.rows-and-columns td.col-unit", "els => els.map(e => Number(e.innerText))")
        expected = [u for (u,) in duck(site, mission_sql(condition), [model, dataset, layer])]
        assert units == expected, (model, dataset)
        answers[(model, dataset)] = units
        page.close()
    # the red channel, alive only on shapes, is surely class- and colour-selective; twin finds it without significance
    assert answers[("planted", "shapes")] and answers[("planted", "nored")] == []
    assert answers[("twin", "shapes")] == answers[("planted", "shapes")]
    assert duck(site, "SELECT COUNT(gamma_p), COUNT(alpha_lo) FROM neurons WHERE model = 'twin'") == [(0, 0)]


def test_most_selective_neurons_link_to_their_pages(site, browser):  # noqa: F811
    page = open_page(browser, site["base"] + "/")
    for model, dataset in RUNS:
        section = page.locator(f"section.run[data-model='{model}'][data-dataset='{dataset}']")
        for index in ("alpha", "gamma"):
            links = section.locator(f".top-{index} figcaption a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
            keys = [urllib.parse.parse_qs(h.split("?")[1]) for h in links]
            expected = duck(site, f"SELECT layer, unit FROM neurons WHERE model = ? AND dataset = ? AND {index} IS NOT NULL "
                                  f"ORDER BY {index} DESC, layer, unit LIMIT 6", [model, dataset])
            assert [(k["layer"][0], int(k["unit"][0])) for k in keys] == expected, (model, dataset, index)
            assert all(k["model"] == [model] and k["dataset"] == [dataset] for k in keys)
            more = section.locator(f"h3 a[href*='_sort_desc={index}']").get_attribute("href")
            assert f"dataset={dataset}" in more and f"model={model}" in more
    pictures = wait_for_images(page, "section.run img")
    assert pictures and all(natural > 0 for natural, _, _ in pictures)
    page.locator("section.run[data-model='planted'][data-dataset='shapes'] .top-alpha figcaption a").first.click()
    page.wait_for_load_state()
    assert "dataset=shapes" in page.url and "planted" in page.inner_text("h1")
    page.goto(site["base"] + "/")
    page.locator("a.run-link[data-model='planted'][data-dataset='nored']").click()
    page.wait_for_load_state()
    assert "planted" in page.inner_text("h1") and "on nored" in page.inner_text("h1")
    page.close()


def fallback_note(html, model, dataset):
    section = re.search(rf'<section class="run" data-model="{model}" data-dataset="{dataset}">(.*?)</section>', html, re.S)
    note = re.search(r'<p class="mission-fallback">(.*?)</p>', section.group(1), re.S)
    return None if note is None else re.sub(r"<[^>]+>", "", note.group(1)).replace("&lt;", "<").replace("&gt;", ">")


def test_the_fallback_note_names_only_what_the_run_dropped(site, tmp_path):
    """One run without γ's null (--gamma-null-draws 0), one without the bootstrap (--bootstrap 0): each note
    names only its own option and its own dropped condition; twin (both off) names both, the others none."""
    from ingest.data import open_images
    from ingest.models import LoadedModel
    from ingest.pipeline import IngestOptions, ingest
    from tests.planted import planted

    html = get(site["base"] + "/")[1].decode()
    twin = fallback_note(html, "twin", "shapes")
    assert "--gamma-null-draws 0" in twin and "--bootstrap 0" in twin
    assert "gamma_p < 0.01 is left out" in twin and "alpha_lo > 0.5 becomes alpha > 0.5" in twin
    assert fallback_note(html, "planted", "shapes") is None and fallback_note(html, "planted", "nored") is None

    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=8,
                         self_activation=False, keep_activations=0)
    path = tmp_path / "mixed.duckdb"
    images = open_images(site["path"].parent / "shapes")
    ingest(model, images, path, "no_null", ["0"], dataclasses.replace(opts, gamma_null_draws=0, bootstrap=20))
    ingest(model, images, path, "no_bootstrap", ["0"], dataclasses.replace(opts, gamma_null_draws=50, bootstrap=0))
    db, metadata, _ = prepare(path)
    with running(db, metadata, timeout=60) as base:
        html = get(base + "/")[1].decode()
    no_null, no_bootstrap = fallback_note(html, "no_null", "shapes"), fallback_note(html, "no_bootstrap", "shapes")
    assert "--gamma-null-draws 0" in no_null and "--bootstrap" not in no_null
    assert "gamma_p < 0.01 is left out" in no_null and "alpha" not in no_null
    assert "--bootstrap 0" in no_bootstrap and "--gamma-null-draws" not in no_bootstrap
    assert "alpha_lo > 0.5 becomes alpha > 0.5" in no_bootstrap and "gamma_p" not in no_bootstrap
    conditions = dict(re.findall(r'data-model="(\w+)" data-dataset="shapes">.*?<code class="mission-condition">(.*?)</code>',
                                 html, re.S))
    assert conditions == {"no_null": "gamma &gt; 0.9 AND alpha_lo &gt; 0.5",
                          "no_bootstrap": "gamma &gt; 0.9 AND gamma_p &lt; 0.01 AND alpha &gt; 0.5"}
