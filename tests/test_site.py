"""The published catalogue in a real Datasette server, opened in Debian's Chromium via Playwright.

Set NEUROCAT_SCREENSHOTS=docs to also save the screenshots the README shows.
"""
import io
import json
import os
import shutil
import sqlite3
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import catalog
from catalog import plots
from catalog.catalog import view_files
from catalog.publish import publish
from catalog.site import prepare, running
from catalog.datasette.neurocat_pages import format_float
from ingest.data import open_images
from ingest.pipeline import ingest
from tests.test_views import normalise

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MISSION = "SELECT model, layer, unit FROM neurons WHERE gamma > 0.9 AND alpha > 0.5"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from tests.conftest import planted_images
    from ingest.models import LoadedModel
    from ingest.pipeline import IngestOptions
    from tests.planted import planted

    tmp = tmp_path_factory.mktemp("site")
    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=12)
    ingest(model, open_images(planted_images(tmp / "data")), tmp / "c.duckdb", "planted", ["0"], opts)
    from ingest.visualize import gradcam_top_images, visualize

    with catalog.open(tmp / "c.duckdb") as cat:
        visualize(cat, "planted", "0", size=24, steps=16, param="pixel", device="cpu", network=model, progress=False)
        gradcam_top_images(cat, "planted", "0", top=3, device="cpu", network=model, progress=False)
        from ingest.probe import probe

        probe(cat, "planted", [next((tmp / "data" / "red").iterdir())], device="cpu", network=model)
    db, metadata, _ = prepare(tmp / "c.duckdb")
    with running(db, metadata, timeout=30) as base:
        yield {"base": base, "db": db, "duckdb": tmp / "c.duckdb", "name": db.stem}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"neurocat-chromium-{os.getpid()}"
    with sync_playwright() as p:  # a fresh profile per run
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update"])
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def shot(page, name):
    out = os.environ.get("NEUROCAT_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / f"{name}.png"), full_page=True)


def test_mission_query_same_rows_through_datasette_json(site):
    url = f"{site['base']}/{site['name']}.json?" + urllib.parse.urlencode({"sql": MISSION, "_shape": "array"})
    rows = json.loads(get(url)[1])
    with catalog.open(site["duckdb"], read_only=True) as cat:
        expected = cat.rows(MISSION)
    assert sorted((r["model"], r["layer"], r["unit"]) for r in rows) == sorted(expected)
    assert expected  # the red detector


def test_every_view_same_rows_in_duckdb_and_the_published_sqlite(site):
    lite = sqlite3.connect(site["db"])
    with catalog.open(site["duckdb"], read_only=True) as cat:
        for view in view_files():
            assert normalise(cat.rows(f"SELECT * FROM {view}")) == \
                normalise(lite.execute(f"SELECT * FROM {view}").fetchall()), view


def test_probe_rows_join_neurons_in_the_browser(site, browser):
    with catalog.open(site["duckdb"], read_only=True) as cat:
        expected = cat.rows("SELECT unit, alpha FROM probe_neurons ORDER BY unit")
    assert len(expected) == 3 and expected[0][1] is not None  # the red unit's α came from neurons
    page = open_page(browser, f"{site['base']}/{site['name']}/probe_neurons?_sort=unit")
    headers = [h.strip() for h in page.locator("thead th").all_inner_texts()]
    assert "rel_activation" in " ".join(headers) and "alpha" in " ".join(headers)
    assert page.locator("tbody tr").count() == len(expected)
    page.close()


def open_page(browser, url):
    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})  # as the new user saw it
    page.goto(url)
    return page


def wait_for_images(page, selector):
    page.wait_for_function(f"[...document.querySelectorAll('{selector}')].every(e => e.complete)", timeout=15000)
    return page.eval_on_selector_all(selector, "els => els.map(e => [e.naturalWidth, e.getBoundingClientRect().width, "
                                               "e.getBoundingClientRect().right])")


def headers(page):
    return page.eval_on_selector_all("table.rows-and-columns th", "els => els.map(e => e.dataset.column)")


def test_table_page_shows_nf_thumbnails(site, browser):
    page = open_page(browser, f"{site['base']}/{site['name']}/neurons?dead=0")
    # identifying columns, the NF, then the indexes people look for; no row-link or rowid column
    assert headers(page)[:10] == ["model", "dataset", "layer", "unit", "nf_png", "alpha", "hue", "color_name",
                                  "gamma", "gamma_m"]
    assert not {"rowid", "Link"} & set(headers(page))
    images = wait_for_images(page, "td.col-nf_png img")
    assert len(images) >= 2
    lite = sqlite3.connect(site["db"])
    sizes = {Image.open(io.BytesIO(png)).size[0] for (png,) in lite.execute("SELECT nf_png FROM neurons WHERE NOT dead")}
    for natural, shown, right in images:
        assert natural in sizes and shown == 48 and right < 1280  # the stored NF, shown at 48 px, on screen
    row_heights = page.eval_on_selector_all("table.rows-and-columns tbody tr", "els => els.map(e => e.offsetHeight)")
    assert max(row_heights) < 70
    # the rows start on the first screen: thirty column descriptions are folded away (and on each header)
    assert page.eval_on_selector("table.rows-and-columns tbody tr", "e => e.getBoundingClientRect().top") < 900
    assert not page.locator("dl.column-descriptions").is_visible()
    page.click("details.neurocat-columns summary")
    assert "colour selectivity α" in page.inner_text("details.neurocat-columns")
    assert page.get_attribute("th[data-column=gamma]", "title").startswith("class selectivity γ")
    link = page.locator("td a[href^='/-/neuron?']").first
    assert link.count() == 1
    # rows in model order by default: layer by layer, unit by unit
    with catalog.open(site["duckdb"], read_only=True) as cat:
        expected = cat.rows("SELECT unit FROM neurons n JOIN layers l USING (model, dataset, layer) WHERE NOT dead "
                            "ORDER BY n.model, n.dataset, l.layer_index, unit")
    units = page.eval_on_selector_all("td.col-unit", "els => els.map(e => Number(e.innerText))")
    assert units == [u for (u,) in expected]
    shot(page, "neurons-table")
    page.close()


def test_a_float_is_rounded_in_html_and_exact_in_json(site, browser):
    with catalog.open(site["duckdb"], read_only=True) as cat:
        (alpha,) = cat.rows("SELECT alpha FROM neurons WHERE unit = 0")[0]
    assert len(repr(alpha)) > 8  # a value with digits to lose
    query = "?" + urllib.parse.urlencode({"unit": 0})
    rows = json.loads(get(f"{site['base']}/{site['name']}/neurons.json{query}&_shape=array")[1])
    assert rows[0]["alpha"] == alpha  # JSON: every digit
    csv = get(f"{site['base']}/{site['name']}/neurons.csv{query}")[1].decode()
    assert repr(alpha) in csv
    page = open_page(browser, f"{site['base']}/{site['name']}/neurons{query}")
    cell = page.locator("td.col-alpha").first
    text = cell.inner_text().strip()
    assert text == format_float(alpha) and len(text) <= 5 and abs(float(text) - alpha) <= 0.0005
    assert cell.locator("span").get_attribute("title") == repr(alpha)  # the exact value on hover
    page.close()
    assert format_float(0.5492571039978151) == "0.549" and format_float(1234.5) == "1230"
    assert format_float(12.34) == "12.3" and format_float(1.0) == "1.00" and format_float(3.2e-7) == "3.2e-07"


def test_top_images_and_similarity_pairs_show_their_pictures(site, browser):
    page = open_page(browser, f"{site['base']}/{site['name']}/top_images?unit=0")
    assert headers(page)[:7] == ["model", "dataset", "layer", "unit", "rank", "crop", "image_id"]
    crops = wait_for_images(page, "td.col-crop img")
    assert len(crops) == 12 and all(natural == 48 and shown == 48 for natural, shown, _ in crops)
    # the crop is the top image's receptive field as the model saw it: the contact sheet's first cell, smaller
    first = get(f"{site['base']}/-/neuron/crop.png?model=planted&dataset=data&layer=0&unit=0&rank=0&size=96")[1]
    sheet = Image.open(io.BytesIO(get(f"{site['base']}/-/neuron/sheet.png?model=planted&dataset=data&layer=0&unit=0")[1]))
    assert (np.asarray(Image.open(io.BytesIO(first)).convert("RGB")) == np.asarray(sheet.crop((0, 0, 96, 96)))).all()
    page.close()
    page = open_page(browser, f"{site['base']}/{site['name']}/similarity_pairs")
    assert headers(page) == ["model", "dataset", "layer", "unit_a", "nf_a", "rank", "unit_b", "nf_b", "pearson",
                             "euclidean"]
    for column in ("nf_a", "nf_b"):
        pictures = wait_for_images(page, f"td.col-{column} img")
        assert pictures and all(natural > 0 and shown == 48 for natural, shown, _ in pictures)
    units_b = page.eval_on_selector_all("td.col-unit_b", "els => els.map(e => e.innerText.trim())")
    srcs = page.eval_on_selector_all("td.col-nf_b img", "els => els.map(e => e.getAttribute('src'))")
    assert [urllib.parse.parse_qs(s.split("?")[1])["unit"][0] for s in srcs] == units_b
    page.close()
    page = open_page(browser, f"{site['base']}/{site['name']}/layer_summary")
    assert headers(page)[:6] == ["model", "dataset", "layer_index", "layer", "channels", "mean_alpha"]
    page.close()


def test_descriptions_are_complete_for_the_browsed_tables(site):
    meta = json.loads(get(f"{site['base']}/-/metadata.json")[1])["databases"][site["name"]]["tables"]
    lite = sqlite3.connect(site["db"])
    for table in ("neurons", "top_images", "similarity_pairs", "layer_summary"):
        columns = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
        described = meta[table]["columns"]
        assert [c for c in columns if not described.get(c)] == [], table
        assert all(len(text) < 130 and text.count(". ") == 0 for text in described.values()), table
    # the neurons description is whole, not cut at the line that names the @more-indexes markers
    assert meta["neurons"]["description"].endswith("when it creates the view.")
    assert "plugins, see README" in meta["neurons"]["description"]


def test_canned_query_form_returns_rows(site, browser):
    page = browser.new_page()
    page.goto(f"{site['base']}/{site['name']}/selective_neurons")
    page.fill("input[name=model]", "planted")
    page.fill("input[name=dataset]", "data")
    page.fill("input[name=layer]", "0")
    page.fill("input[name=gamma]", "0.9")
    page.fill("input[name=alpha]", "0.5")  # gamma_p and alpha_lo left empty: left out of the query
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert page.locator("table.rows-and-columns tbody tr").count() == 1
    assert "0.9" in page.url
    # the mission with significance: γ's p-value and α's lower interval end, as DuckDB answers it
    with catalog.open(site["duckdb"], read_only=True) as cat:
        sure = cat.rows("SELECT unit FROM neurons WHERE model = 'planted' AND layer = '0' AND gamma > 0.9 "
                        "AND gamma_p < 0.01 AND alpha_lo > 0.5")
    assert sure == [(0,)]  # the red detector
    page.fill("input[name=gamma_p]", "0.01")
    page.fill("input[name=alpha_lo]", "0.5")
    page.fill("input[name=alpha]", "")
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert page.eval_on_selector_all("table.rows-and-columns td.col-unit", "els => els.map(e => Number(e.innerText))") == [0]
    assert "gamma_p=0.01" in page.url and "alpha_lo=0.5" in page.url
    page.close()


def test_neuron_page_has_contact_sheet_and_chart(site, browser):
    page = browser.new_page()
    page.goto(f"{site['base']}/-/neuron?model=planted&dataset=data&layer=0&unit=0")
    for selector in ("#nf", "#am-channel", "#sheet", "#classes"):
        page.wait_for_function(f"document.querySelector('{selector}').complete")
        assert page.eval_on_selector(selector, "e => e.naturalWidth") > 0, selector
    assert "red" in page.inner_text("#indexes") and "NF self-activation" in page.inner_text("#indexes")
    page.wait_for_function("[...document.querySelectorAll('img.gradcam')].every(e => e.complete)")
    assert page.eval_on_selector_all("img.gradcam", "els => els.map(e => e.naturalWidth)") == [32] * 3  # the 32 px overlays
    shot(page, "neuron-page")
    page.click("#model-link")
    page.wait_for_load_state()
    assert "dataset=data" in page.url and "planted on data" in page.inner_text("h1")
    page.wait_for_function("[...document.querySelectorAll('img.figure')].every(e => e.complete)")
    assert page.eval_on_selector_all("img.figure", "els => els.map(e => e.naturalWidth)") == [
        w for w in page.eval_on_selector_all("img.figure", "els => els.map(e => e.naturalWidth)") if w > 0]
    assert page.locator("img.figure").count() == len(plots.FIGURES) == 5
    shot(page, "model-page")
    page.close()


def test_publish_during_concurrent_reads_never_errors(site):
    url = f"{site['base']}/{site['name']}.json?" + urllib.parse.urlencode({"sql": MISSION, "_shape": "array"})
    with catalog.open(site["duckdb"], read_only=True) as cat:
        expected = sorted(cat.rows(MISSION))
    failures, done = [], threading.Event()

    def reader():
        for _ in range(200):  # bounded
            if done.is_set():
                return
            try:
                status, body = get(url)
                rows = sorted((r["model"], r["layer"], r["unit"]) for r in json.loads(body))
                if status != 200 or rows != expected:
                    failures.append((status, rows))
            except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                failures.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(3):
        publish(site["duckdb"], site["db"])
    done.set()
    for t in threads:
        t.join(timeout=60)
    assert failures == []


def test_full_text_search_and_facets(site):
    body = json.loads(get(f"{site['base']}/{site['name']}/units.json?_search=red&_shape=objects")[1])
    assert [r["color_name"] for r in body["rows"]] == ["red"]
    body = json.loads(get(f"{site['base']}/{site['name']}/neurons.json")[1])  # facets from the metadata
    assert set(body["facet_results"]) == {"model", "dataset", "layer", "color_name", "faceted"}
    # the published copy stores `neurons` (same SQL) as an indexed table
    lite = sqlite3.connect(site["db"])
    assert lite.execute("SELECT type FROM sqlite_master WHERE name = 'neurons'").fetchone() == ("table",)
