"""Every view, figure, canned query, page and read method is keyed by (model, dataset).

One network ("planted", and a copy "twin" for the cross-model views) is ingested on two data sets
with different images and classes ("red" in both) into one catalogue. The truth for a data set is
a copy of that catalogue with the other data set's rows deleted: whatever the full catalogue shows
for a data set must equal what the copy shows, so a join or filter that drops the dataset (and so
mixes in the other run's rows) fails.
"""
import io
import json
import re
import shutil
import sqlite3
import urllib.error
import urllib.parse
import urllib.request

import duckdb
import numpy as np
import pytest
import torch
from PIL import Image

import catalog
from catalog import plots
from catalog.catalog import view_files
from catalog.compare import match_activations
from catalog.publish import CANNED, publish
from catalog.reading import CatalogLookupError
from catalog.site import prepare, running
from ingest.ablation import ablate
from ingest.analyze import analyze_filter_tree, analyze_label_hierarchy
from ingest.data import open_images
from ingest.invariance import analyze_invariance
from ingest.models import LoadedModel
from ingest.pipeline import IngestOptions, ingest
from ingest.probe import probe
from ingest.visualize import gradcam_top_images, visualize
from tests.conftest import planted_images
from tests.planted import EDGE, RED, planted
from tests.test_views import normalise

A, B = "shapes", "tones"
TOP_N = {A: 12, B: 20}


def tone_images(root, per_class=8, seed=1):
    """Another data set, 40 × 48 (not square, so the model's view is resized), where every pixel has
    R < (G + B) / 2 by a margin: the planted red channel is dead here (a_max < 0, not float noise) and alive
    on the other data set, so a join that loses the dataset mixes dead and live rows of one unit.

    Its class `red` (a name only) holds 5 × 5 violet squares on cool gray, `green` 4 × 4 green squares,
    `stripes` a vertical edge of random contrast.
    """
    rng = np.random.default_rng(seed)
    for label in ("red", "green", "stripes"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            img = np.full((40, 48, 3), (0.4, 0.5, 0.55))
            y, x = rng.integers(6, 28, 2)
            if label == "red":
                img[y:y + 5, x:x + 5] = (0.3, 0, 1)
            elif label == "green":
                img[y:y + 4, x:x + 4] = (0, 1, 0)
            else:
                lo = rng.uniform(0.1, 0.4)
                img[:, :x] = (0.8 * lo, lo, lo)
                img[:, x:] = (0.8 * (1 - lo), 1 - lo, 1 - lo)
            Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(root / label / f"{i:02d}.png")
    return root


def _only(src, dst, keep):
    """A copy of the catalogue holding data set ``keep`` only: the truth the full catalogue must show for it."""
    shutil.copy(src, dst)
    con = duckdb.connect(str(dst))
    tables = con.execute("SELECT DISTINCT table_name FROM information_schema.columns WHERE column_name = 'dataset' "
                         "AND table_name IN (SELECT table_name FROM information_schema.tables "
                         "WHERE table_type = 'BASE TABLE')").fetchall()
    for (table,) in tables:
        con.execute(f"DELETE FROM {table} WHERE dataset <> ?", [keep])
    con.close()
    return dst


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    # A classifier whose layer "0" is the planted conv (3 outputs for 3 classes), for the ablation rows.
    classifier = LoadedModel(torch.nn.Sequential(model.module[0], torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten()),
                             "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    folders = {A: planted_images(tmp / A), B: tone_images(tmp / B)}
    path = tmp / "c.duckdb"
    for ds, folder in folders.items():
        opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=TOP_N[ds])
        for name in ("planted", "twin"):
            ingest(model, open_images(folder), path, name, ["0"], opts)
    hierarchy = {A: "child,parent\nred,colour\nblue,colour\nbars,pattern\n",
                 B: "child,parent\nred,warm\ngreen,cold\nstripes,pattern\nwarm,colour\ncold,colour\n"}
    with catalog.open(path) as cat:
        for ds in (A, B):
            analyze_filter_tree(cat, "planted", "red", dataset=ds, network=model, progress=False)
            ablate(cat, "planted", "0", dataset=ds, split=0.5, device="cpu", network=classifier, progress=False)
            (tmp / f"{ds}.csv").write_text(hierarchy[ds])
            analyze_label_hierarchy(cat, ds, str(tmp / f"{ds}.csv"))
            match_activations(cat, "planted", "twin", ds)
            visualize(cat, "planted", "0", dataset=ds, size=24, steps=8, param="pixel", device="cpu", network=model,
                      progress=False)
            gradcam_top_images(cat, "planted", "0", dataset=ds, top=2, device="cpu", network=model, progress=False)
            probe(cat, "planted", [folders[A] / "red" / "00.png", folders[B] / "red" / "00.png"], dataset=ds,
                  device="cpu", network=model)
            analyze_invariance(cat, "planted", ["orientation", "symmetry"], dataset=ds, top_n=6, step=30,
                               network=model, device="cpu", progress=False)
    solo = {ds: _only(path, tmp / f"only-{ds}.duckdb", ds) for ds in (A, B)}
    solo_db = {ds: publish(solo[ds], tmp / f"only-{ds}.db") for ds in (A, B)}
    db, metadata, _ = prepare(path)
    with running(db, metadata, timeout=60) as base:
        yield {"path": path, "solo": solo, "solo_db": solo_db, "db": db, "base": base, "folders": folders}


def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def duck_rows(path, sql, params=()):
    with catalog.open(path, read_only=True) as cat:
        return cat.rows(sql, list(params))


# With one live neuron on B (the vertical edge), nothing is colour selective, no pair of neurons is compared,
# no neuron is significantly class selective and none is mirror-symmetric (the red blob is, on A).
EMPTY_ON_B = {"color_selective_neurons", "similarity_by_layer", "significant_class_neurons",
              "symmetry_selective_neurons"}
# Views of opt-in analyses this fixture does not run: keyed, but empty on both data sets.
NOT_RUN: set[str] = set()


def test_every_view_shows_each_data_set_as_if_alone(two):
    for view in view_files():
        columns = [r[0] for r in duck_rows(two["path"], f"DESCRIBE {view}")]
        assert "dataset" in columns, view
        per_ds = {}
        for ds in (A, B):
            got = duck_rows(two["path"], f"SELECT * FROM {view} WHERE dataset = ?", [ds])
            alone = duck_rows(two["solo"][ds], f"SELECT * FROM {view}")
            assert got or (ds == B and view in EMPTY_ON_B) or view in NOT_RUN, (view, ds)
            assert normalise(got) == normalise(alone), (view, ds)
            # the published SQLite copy (what the site serves) too
            lite = sqlite3.connect(two["db"]).execute(f"SELECT * FROM {view} WHERE dataset = ?", [ds]).fetchall()
            assert normalise(lite) == normalise(alone), (view, ds)
            per_ds[ds] = normalise([tuple(v for c, v in zip(columns, r) if c != "dataset") for r in got])
        if view not in NOT_RUN:
            assert per_ds[A] != per_ds[B], view  # so mixing the two runs would show


def test_figures_query_one_run(two):
    for name, (sql, draw) in plots.FIGURES.items():
        assert sql.count("?") == 2, name
        drawn = {}
        for ds in (A, B):
            alone = duck_rows(two["solo"][ds], sql, ["planted", ds])
            assert alone or (name == "hue_distribution" and ds == B), name  # no colour-selective neuron on B
            assert normalise(duck_rows(two["path"], sql, ["planted", ds])) == normalise(alone), name
            lite = sqlite3.connect(two["db"]).execute(sql, ["planted", ds]).fetchall()
            assert normalise(lite) == normalise(alone), name
            drawn[ds] = draw(lite)
            # the model page draws the same picture from the same rows
            served = get(f"{two['base']}/-/model/plot.png?" + urllib.parse.urlencode(
                {"model": "planted", "dataset": ds, "figure": name}))
            assert served == drawn[ds], (name, ds)
        assert drawn[A] != drawn[B], name
    with pytest.raises(urllib.error.HTTPError):  # a figure without its data set is not drawn
        get(f"{two['base']}/-/model/plot.png?model=planted&figure=ranked_curves")


CANNED_PARAMS = {
    "selective_neurons": {"model": "planted", "layer": "0", "gamma": "-1", "alpha": "-1", "gamma_p": "",
                          "alpha_lo": ""},
    "top_images_of_neuron": {"model": "planted", "layer": "0", "unit": "0"},
    "similar_neurons": {"model": "planted", "layer": "0", "unit": "0"},
    "neurons_selective_to_class": {"label": "red"},
}


def test_canned_queries_take_the_data_set(two):
    db = two["db"].stem
    assert set(CANNED) == set(CANNED_PARAMS)
    for name, query in CANNED.items():
        assert ":dataset" in query["sql"], name
        answers = {}
        for ds in (A, B):
            params = {**CANNED_PARAMS[name], "dataset": ds}
            url = f"{two['base']}/{db}/{name}.json?" + urllib.parse.urlencode({**params, "_shape": "array"})
            body = json.loads(get(url))
            lite = sqlite3.connect(two["solo_db"][ds])
            cur = lite.execute(query["sql"], params)
            columns = [d[0] for d in cur.description]
            alone = [dict(zip(columns, r)) for r in cur.fetchall()]
            assert alone or (name == "similar_neurons" and ds == B), (name, ds)  # one live neuron on B
            keep = [c for c in columns if c != "nf_png"]
            assert normalise([tuple(r[c] for c in keep) for r in body]) == \
                normalise([tuple(r[c] for c in keep) for r in alone]), (name, ds)
            answers[ds] = normalise([tuple(r[c] for c in keep if c != "dataset") for r in body])
        assert answers[A] != answers[B], name
    # the top images of a data set's neuron are that data set's files
    rows = json.loads(get(f"{two['base']}/{db}/top_images_of_neuron.json?" + urllib.parse.urlencode(
        {**CANNED_PARAMS["top_images_of_neuron"], "dataset": B, "_shape": "array"})))
    assert len(rows) == TOP_N[B] and {r["label"] for r in rows} <= {"red", "green", "stripes"}


def _neuron_query(ds, unit=EDGE):
    return urllib.parse.urlencode({"model": "planted", "dataset": ds, "layer": "0", "unit": unit})


def test_neuron_page_and_its_pictures_are_of_its_run(two):
    base = two["base"]
    for ds in (A, B):
        other = B if ds == A else A
        q = _neuron_query(ds)
        html = get(f"{base}/-/neuron?{q}").decode()
        unit = f"SELECT a_max FROM units WHERE layer = '0' AND unit = {EDGE}"
        (a_max,), (other_max,) = duck_rows(two["solo"][ds], unit)[0], duck_rows(two["solo"][other], unit)[0]
        assert a_max != other_max
        assert f"<th>a_max</th><td>{a_max:.4g}</td>" in html
        assert f"data set {ds}" in html
        # every link and picture of the page names the page's data set
        links = re.findall(r'(?:href|src)="(/-/(?:neuron|model)[^"]*)"', html)
        assert len(links) > 5 and all(f"dataset={ds}" in link for link in links), links
        assert len(re.findall(r'class="gradcam"', html)) == 2
        with catalog.open(two["solo"][ds], read_only=True) as cat:
            nf = cat.rows(f"SELECT nf_png FROM units WHERE layer = '0' AND unit = {EDGE}")[0][0]
            classes = cat.rows(plots.CLASS_FREQUENCIES_SQL, ["planted", ds, "0", EDGE])
            root, size = cat.rows("SELECT d.root, m.image_size FROM models m JOIN datasets d USING (dataset) "
                                  "WHERE m.model = 'planted'")[0]
            crops = cat.rows("SELECT i.path, t.crop_top, t.crop_left, t.crop_size FROM top_images t JOIN images i "
                             "USING (dataset, image_id) WHERE t.model = 'planted' AND t.layer = '0' AND t.unit = ? "
                             "ORDER BY t.rank", [EDGE])
        assert get(f"{base}/-/neuron/nf.png?{q}") == nf
        assert get(f"{base}/-/neuron/classes.png?{q}") == plots.class_frequency_chart(classes)
        sheet = get(f"{base}/-/neuron/sheet.png?{q}")
        assert sheet == plots.contact_sheet(root, size, crops)
        assert Image.open(io.BytesIO(sheet)).size == (960, 96 * -(-TOP_N[ds] // 10))
    assert get(f"{base}/-/neuron/sheet.png?{_neuron_query(A)}") != get(f"{base}/-/neuron/sheet.png?{_neuron_query(B)}")
    # the red channel lives on A only
    assert "Dead neuron" not in get(f"{base}/-/neuron?{_neuron_query(A, RED)}").decode()
    assert "Dead neuron" in get(f"{base}/-/neuron?{_neuron_query(B, RED)}").decode()
    assert get(f"{base}/-/neuron/nf.png?{_neuron_query(A, RED)}").startswith(b"\x89PNG")
    with pytest.raises(urllib.error.HTTPError):
        get(f"{base}/-/neuron/nf.png?{_neuron_query(B, RED)}")


def test_model_page_is_of_one_run(two):
    base, db = two["base"], two["db"].stem
    for ds in (A, B):
        html = get(f"{base}/-/model?model=planted&dataset={ds}").decode()
        assert f"on {ds}" in html
        (alpha, gamma) = duck_rows(two["solo"][ds], "SELECT mean_alpha, mean_gamma FROM layer_summary "
                                                    "WHERE model = 'planted' AND layer = '0'")[0]
        assert f"<td>{alpha:.3f}</td><td>{gamma:.3f}</td>" in html
        layers = re.search(r'<table id="layers">(.*?)</table>', html, re.S).group(1)
        assert layers.count("<tr><td>") == 1  # layer "0" of this run, not also the other run's
        figures = re.findall(r'src="(/-/model/plot\.png\?[^"]+)"', html)
        assert len(figures) == len(plots.FIGURES) and all(f"dataset={ds}" in f for f in figures)
        table_link = re.search(rf'href="(/{db}/neurons\?[^"]+)"', html).group(1).replace("&amp;", "&")
        assert f"dataset={ds}" in table_link
        # the layer's neurons table, filtered by the link, holds only this run's neurons; unit links keep the key
        table = get(base + table_link).decode()
        assert table.count("/-/neuron?") >= 3 and all(f"dataset={ds}" in h for h in
                                                      re.findall(r'href="(/-/neuron\?[^"]+)"', table))
    runs = re.findall(r'href="/-/model\?([^"]+)"', html)
    assert sorted(runs) == sorted(urllib.parse.urlencode({"model": m, "dataset": d}).replace("&", "&amp;")
                                  for m in ("planted", "twin") for d in (A, B))
    # a model alone opens its first run; an unknown run is a 404
    assert f"on {A}" in get(f"{base}/-/model?model=planted").decode()
    with pytest.raises(urllib.error.HTTPError) as err:
        get(f"{base}/-/model?model=planted&dataset=nope")
    assert err.value.code == 404


def test_read_api_is_keyed_by_model_and_dataset(two):
    with catalog.open(two["path"], read_only=True) as cat:
        calls = {
            "runs": lambda c, ds: c.runs("planted", ds),
            "run": lambda c, ds: c.run("planted", ds),
            "dataset_info": lambda c, ds: c.dataset_info(ds),
            "images": lambda c, ds: c.images(ds),
            "images of a class": lambda c, ds: c.images(ds, label="red"),
            "images by id": lambda c, ds: c.images(ds, ids=[0, 5, 7]),
            "classes": lambda c, ds: c.classes(ds),
            "layers": lambda c, ds: c.layers("planted", ds),
            "layer_names": lambda c, ds: c.layer_names("planted", ds),
            "neurons": lambda c, ds: c.neurons("planted", ds).drop_columns(["nf_png"]),
            "neurons where": lambda c, ds: c.neurons("planted", ds, "0", where="NOT dead", columns=["unit", "gamma"]),
            "select_units": lambda c, ds: c.select_units("planted", ds, "0", where="a_max > 0"),
            "top_images": lambda c, ds: c.top_images("planted", ds),
            "top_images live, top 3": lambda c, ds: c.top_images("planted", ds, "0", units=[0, 2], top=3, live=True),
            "class_frequencies": lambda c, ds: c.class_frequencies("planted", ds, "0", units=[0]),
            "class_vectors": lambda c, ds: c.class_vectors("planted", ds),
            "figure": lambda c, ds: c.figure("ranked_curves", "planted", ds),
        }
        got = {ds: {k: f(cat, ds) for k, f in calls.items()} for ds in (A, B)}
        for ds in (A, B):
            with catalog.open(two["solo"][ds], read_only=True) as alone:
                for k, f in calls.items():
                    assert got[ds][k] == f(alone, ds), (k, ds)
                    # without the data set, the solo copy has one run: that run
                assert alone.run("planted") == got[ds]["run"]
        for k in calls:
            if k not in ("select_units", "layer_names"):  # same layer, same live units on either data set
                assert got[A][k] != got[B][k], k
        assert len(got[A]["top_images"]) == 3 * TOP_N[A] and len(got[B]["top_images"]) == 3 * TOP_N[B]
        assert set(got[B]["top_images"].column("label").to_pylist()) <= {"red", "green", "stripes"}
        assert got[A]["top_images live, top 3"].column("unit").to_pylist() == [0, 0, 0]  # unit 2 is dead
        with pytest.raises(CatalogLookupError, match="several data sets"):
            cat.run("planted")
        with pytest.raises(CatalogLookupError, match="several data sets"):
            cat.figure("ranked_curves", "planted")
        with pytest.raises(CatalogLookupError, match="planted on shapes, planted on tones, twin on shapes"):
            cat.run("nope")
