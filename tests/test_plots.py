"""The papers' figures stay readable on a deep model: a synthetic catalogue of 50 layers (EfficientNet-Lite0
has 49) whose layer names sort differently as text ("_blocks.10" before "_blocks.2") than in the model.

Each figure renders from DuckDB and from the published SQLite copy, at a size a page can show; layer tick
labels never overlap and follow the model's order; the values drawn are the views' values.
"""
import io
import itertools
import sqlite3

import pytest
from PIL import Image
from typer.testing import CliRunner

import catalog
from catalog import plots
from catalog.publish import publish

N_LAYERS, UNITS, TOP = 50, 12, 10
MODEL, DATASET = "deep", "synthetic"


def layer_name(i: int) -> str:
    return f"_blocks.{i}._project_conv"


def synthetic(path, n_layers=N_LAYERS, units=UNITS, top=TOP, invariance=True):
    """A catalogue of ``n_layers`` layers of ``units`` neurons written with SQL: every 5th layer has one dead
    neuron, α, γ, MF measures and top-image curves vary with the layer and the unit; with ``invariance``,
    the even layers have orientation and symmetry indexes."""
    name = "'_blocks.' || l || '._project_conv'"
    grid = f"FROM range({n_layers}) t(l), range({units}) s(u)"
    dead = "l % 5 = 0 AND u = 0"
    with catalog.open(path) as cat:
        con = cat.con
        con.execute(f"INSERT INTO datasets VALUES ('{DATASET}', '/nonexistent', 100, 10, 'x', 0.5, 0.5, 0.5)")
        con.execute(f"INSERT INTO images SELECT '{DATASET}', i, 'img/' || i || '.png', 'class' || (i % 10) "
                    "FROM range(100) t(i)")
        con.execute("INSERT INTO models (model, dataset, architecture, source, image_size, top_n, color_threshold, "
                    "n_images, n_neurons) VALUES (?, ?, 'none', 'callable', 64, ?, 0.25, 100, ?)",
                    [MODEL, DATASET, top, n_layers * units])
        con.execute(f"INSERT INTO layers (model, dataset, layer, layer_index, module_type, channels, rf_size, rf_stride, "
                    f"n_dead) SELECT '{MODEL}', '{DATASET}', {name}, l, 'Conv2d', {units}, 3 + 4 * l, 2, "
                    f"CASE WHEN l % 5 = 0 THEN 1 ELSE 0 END FROM range({n_layers}) t(l)")
        con.execute(f"INSERT INTO units (model, dataset, layer, unit, a_max, n_top, dead, nf_n_used, hue, color_name, "
                    f"alpha_method, gamma_m) SELECT '{MODEL}', '{DATASET}', {name}, u, CASE WHEN {dead} THEN 0 ELSE 1 + u END, "
                    f"{top}, {dead}, 7, CASE WHEN {dead} THEN NULL ELSE (l * 37 + u * 53) % 360 END, "
                    f"CASE WHEN (l + u) % 3 = 0 THEN 'red' END, 'centred', 1 + u % 4 {grid}")
        indexes = {"alpha": "((l * 7 + u * 3) % 11) / 10.0", "gamma": "((l * 3 + u * 5) % 10) / 10.0 + 0.05",
                   "mf_degree": "0.5 + l / 25.0 + u / 100.0", "mf_zscore": "(u - 5.5 + l % 3) / 3.0",
                   "sparsity": "0.3 + u / 40.0", "flatness": "0.2 + l / 100.0"}
        for ix, expr in indexes.items():
            con.execute(f"INSERT INTO neuron_indexes SELECT '{MODEL}', '{DATASET}', {name}, u, '{ix}', "
                        f"CASE WHEN {dead} THEN NULL ELSE {expr} END {grid}")
        if invariance:  # even layers: orientation and symmetry indexes of the live neurons, with mirror rows
            measured = f"l % 2 = 0 AND NOT ({dead})"
            for ix, expr in {"orientation_index": "((l + u) % 4) / 4.0", "symmetry_index": "((l + 2 * u) % 5) / 5.0"}.items():
                con.execute(f"INSERT INTO neuron_indexes SELECT '{MODEL}', '{DATASET}', {name}, u, '{ix}', {expr} "
                            f"{grid} WHERE {measured}")
            con.execute(f"INSERT INTO symmetry_axes SELECT '{MODEL}', '{DATASET}', {name}, u, a, "
                        f"((l + 2 * u) % 5) / 5.0, 5 {grid}, (VALUES (0), (45), (90), (135)) x(a) WHERE {measured}")
        con.execute(f"INSERT INTO top_images (model, dataset, layer, unit, rank, image_id, activation, rel_activation, "
                    f"crop_top, crop_left, crop_size, in_nf) SELECT '{MODEL}', '{DATASET}', {name}, u, r, "
                    f"(l * 13 + u * 7 + r) % 100, 1.0 - r * (0.02 + 0.0015 * l), 1.0 - r * (0.02 + 0.0015 * l), "
                    f"0, 0, 16, r < 5 {grid}, range({top}) q(r)")
    return path


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deep")
    path = synthetic(tmp / "deep.duckdb")
    return {"path": path, "db": publish(path, tmp / "deep.db"), "tmp": tmp}


def duck(path, sql, params=()):
    with catalog.open(path, read_only=True) as cat:
        return cat.rows(sql, list(params))


def figure_rows(deep, name, engine="duckdb"):
    sql = plots.FIGURES[name][0]
    if engine == "duckdb":
        return duck(deep["path"], sql, [MODEL, DATASET])
    return sqlite3.connect(deep["db"]).execute(sql, [MODEL, DATASET]).fetchall()


def test_every_figure_renders_for_50_layers_at_a_page_size(deep):
    assert set(plots.FIGURES) == {"selectivity_bins", "hue_distribution", "ranked_curves", "mf_degree",
                                  "invariance_by_layer"}
    assert set(plots.FIGURE_BUILDERS) == set(plots.FIGURES)
    for name in plots.FIGURES:
        for engine in ("duckdb", "sqlite"):
            png = plots.FIGURES[name][1](figure_rows(deep, name, engine))
            image = Image.open(io.BytesIO(png))
            image.load()
            assert image.format == "PNG"
            w, h = image.size
            assert 600 <= w <= 1400 and 350 <= h <= 1000, (name, engine, image.size)


def _overlaps(boxes):
    return [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]


def _layer_labels(fig):
    """The text and window boxes of the tick labels naming layers: on x axes, or on a colour bar's y axis."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        for label in ax.get_xticklabels() + ax.get_yticklabels():
            if label.get_visible() and label.get_text().startswith("_blocks."):
                out.append((ax, label.get_text(), label.get_window_extent(renderer)))
    return out


@pytest.mark.parametrize("name", ["selectivity_bins", "hue_distribution", "ranked_curves", "mf_degree",
                                  "invariance_by_layer"])
def test_layer_labels_do_not_overlap_and_follow_the_model(deep, name):
    fig = plots.FIGURE_BUILDERS[name](figure_rows(deep, name))
    try:
        labels = _layer_labels(fig)
        assert labels, name
        for ax, group in itertools.groupby(labels, key=lambda x: x[0]):
            group = list(group)
            texts = [t for _, t, _ in group]
            boxes = [b for _, _, b in group]
            assert _overlaps(boxes) == [], (name, texts)
            assert 6 <= len(texts) <= plots.MAX_LAYER_LABELS + 1, (name, texts)
            indexes = [int(t.split(".")[1]) for t in texts]
            assert indexes == sorted(indexes), (name, texts)  # model order, not text order
            assert indexes[0] == 0 and indexes[-1] == N_LAYERS - 1, (name, texts)  # first and last layer named
        assert fig.get_size_inches()[0] <= 13
    finally:
        plots.plt.close(fig)


def test_few_layers_are_all_named(tmp_path):
    path = synthetic(tmp_path / "small.duckdb", n_layers=3)
    for name in ("selectivity_bins", "hue_distribution", "mf_degree", "invariance_by_layer"):
        fig = plots.FIGURE_BUILDERS[name](duck(path, plots.FIGURES[name][0], [MODEL, DATASET]))
        try:
            assert [t for _, t, _ in _layer_labels(fig)] == [layer_name(i) for i in range(3)], name
        finally:
            plots.plt.close(fig)
    fig = plots.ranked_curves_figure(duck(path, plots.FIGURES["ranked_curves"][0], [MODEL, DATASET]))
    try:  # few curves: a legend naming each layer, in model order
        assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [f"layer {layer_name(i)}" for i in range(3)]
    finally:
        plots.plt.close(fig)


def test_selectivity_bins_draws_the_views_fractions_and_colour_share(deep):
    fig = plots.selectivity_bins_figure(figure_rows(deep, "selectivity_bins"))
    try:
        expected = duck(deep["path"], "SELECT \"index\", layer_index, bin, fraction FROM layer_selectivity_bins "
                                      "WHERE model = ? AND dataset = ?", [MODEL, DATASET])
        fractions = {(ix, li, b): f or 0.0 for ix, li, b, f in expected}
        for ax, index in zip(fig.axes[:2], ("alpha", "gamma")):
            bins = ax.containers
            assert len(bins) == 10
            for b, container in enumerate(bins):
                heights = [p.get_height() for p in container.patches]
                assert heights == pytest.approx([fractions[(index, li, b)] for li in range(N_LAYERS)]), (index, b)
        share = [line for line in fig.axes[0].get_lines() if line.get_gid() == "color_share"][0].get_ydata()
        colour = dict(duck(deep["path"], "SELECT layer_index, color_selective_fraction FROM layer_summary "
                                         "WHERE model = ? AND dataset = ?", [MODEL, DATASET]))
        assert list(share) == pytest.approx([colour[i] for i in range(N_LAYERS)])
        assert len(set(share)) > 1
    finally:
        plots.plt.close(fig)


def test_hue_mf_and_curves_draw_the_views_values(deep):
    fig = plots.hue_distribution_figure(figure_rows(deep, "hue_distribution"))
    try:
        heat = fig.axes[2]
        matrix = heat.get_images()[0].get_array()
        assert matrix.shape == (36, N_LAYERS)
        counts = dict(duck(deep["path"], "SELECT l.layer_index, COUNT(c.unit) FROM layers l LEFT JOIN "
                                         "color_selective_neurons c USING (model, dataset, layer) GROUP BY 1"))
        assert list(matrix.sum(axis=0)) == [counts[i] for i in range(N_LAYERS)]
        assert f"hue of {sum(counts.values())} colour-selective neurons" in fig.axes[0].get_title()
    finally:
        plots.plt.close(fig)
    fig = plots.mf_degree_figure(figure_rows(deep, "mf_degree"))
    try:
        (degree,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "mf_degree"]
        (single,) = [ln for ln in fig.axes[1].get_lines() if ln.get_gid() == "single_faceted"]
        view = duck(deep["path"], "SELECT mean_mf_degree, single_faceted_fraction FROM faceted_by_layer "
                                  "WHERE model = ? AND dataset = ? ORDER BY layer_index", [MODEL, DATASET])
        assert list(degree.get_ydata()) == pytest.approx([r[0] for r in view])
        assert list(single.get_ydata()) == pytest.approx([r[1] for r in view])
    finally:
        plots.plt.close(fig)
    fig = plots.ranked_curves_figure(figure_rows(deep, "ranked_curves"))
    try:
        curves = [ln for ln in fig.axes[0].get_lines() if (ln.get_gid() or "").startswith("curve:")]
        assert [ln.get_gid() for ln in curves] == [f"curve:{layer_name(i)}" for i in range(N_LAYERS)]
        assert fig.axes[0].get_legend() is None  # 50 layers: a colour bar, not a legend
        means = duck(deep["path"], "SELECT t.rank, AVG(t.rel_activation) FROM top_images t JOIN units u USING "
                                   "(model, dataset, layer, unit) WHERE t.layer = ? AND NOT u.dead GROUP BY 1 ORDER BY 1",
                     [layer_name(7)])
        assert list(curves[7].get_ydata()) == pytest.approx([m for _, m in means])
    finally:
        plots.plt.close(fig)


def test_invariance_by_layer_shares_are_the_views_hand_computed(tmp_path):
    """3 layers of 4 units, unit 0 of layer 0 dead (no index). Layer 0: orientation 0.1, 0.6, 0.9 -> 2 of 3
    at or above 0.5; no symmetry. Layer 1: nothing measured. Layer 2: orientation 0.2, 0.3, 0.4, 0.5 -> 1 of
    4 (0.5 counts); symmetry 0.5, 0.7, 0.1, 0.2 with their four mirror rows -> 2 of 4."""
    path = synthetic(tmp_path / "small.duckdb", n_layers=3, units=4, invariance=False)
    values = {(0, "orientation_index"): [None, 0.1, 0.6, 0.9], (2, "orientation_index"): [0.2, 0.3, 0.4, 0.5],
              (2, "symmetry_index"): [0.5, 0.7, 0.1, 0.2]}
    with catalog.open(path) as cat:
        for (layer, index), per_unit in values.items():
            for unit, value in enumerate(per_unit):
                if value is None:
                    continue
                cat.con.execute("INSERT INTO neuron_indexes VALUES (?, ?, ?, ?, ?, ?)",
                                [MODEL, DATASET, layer_name(layer), unit, index, value])
                if index == "symmetry_index":
                    for axis in (0, 45, 90, 135):
                        cat.con.execute("INSERT INTO symmetry_axes VALUES (?, ?, ?, ?, ?, ?, 5)",
                                        [MODEL, DATASET, layer_name(layer), unit, axis, value])
    expected = [(layer_name(0), pytest.approx(2 / 3), 3, None, 0), (layer_name(1), None, 0, None, 0),
                (layer_name(2), pytest.approx(1 / 4), 4, pytest.approx(2 / 4), 4)]
    sql = plots.FIGURES["invariance_by_layer"][0]
    assert duck(path, sql, [MODEL, DATASET]) == expected
    lite = sqlite3.connect(publish(path, tmp_path / "small.db"))
    assert lite.execute(sql, [MODEL, DATASET]).fetchall() == expected  # the same SQL on the published copy
    fig = plots.invariance_by_layer_figure(duck(path, sql, [MODEL, DATASET]))
    try:
        (orientation,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "orientation_share"]
        (symmetry,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "symmetry_share"]
        assert list(orientation.get_ydata()) == pytest.approx([2 / 3, float("nan"), 1 / 4], nan_ok=True)
        assert list(symmetry.get_ydata()) == pytest.approx([float("nan"), float("nan"), 2 / 4], nan_ok=True)
    finally:
        plots.plt.close(fig)


def test_invariance_by_layer_without_data_says_so(tmp_path):
    path = synthetic(tmp_path / "none.duckdb", n_layers=3, units=4, invariance=False)
    fig = plots.invariance_by_layer_figure(duck(path, plots.FIGURES["invariance_by_layer"][0], [MODEL, DATASET]))
    try:
        assert [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "no_data"] == [
            "no orientation or symmetry data: neurocat analyze orientation|symmetry"]
    finally:
        plots.plt.close(fig)


def test_neurocat_plot_writes_every_figure_of_the_run(deep):
    from ingest.cli import app

    out = deep["tmp"] / "plots"
    result = CliRunner().invoke(app, ["plot", "--model", MODEL, "--catalog", str(deep["path"]),
                                      "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{MODEL}-{DATASET}-{name}.png" for name in plots.FIGURES)
    for name in plots.FIGURES:
        assert Image.open(out / f"{MODEL}-{DATASET}-{name}.png").size[0] >= 600


def test_published_neurons_are_stored_in_model_order(deep):
    """The materialised `neurons` (the table Datasette shows, by rowid) runs layer by layer in model order."""
    lite = sqlite3.connect(deep["db"])
    keys = lite.execute("SELECT layer, unit FROM neurons ORDER BY rowid").fetchall()
    assert keys == [(layer_name(i), u) for i in range(N_LAYERS) for u in range(UNITS)]
    # and it is still the view's rows, column for column
    view = duck(deep["path"], "SELECT * FROM neurons")
    columns = [r[0] for r in duck(deep["path"], "DESCRIBE neurons")]
    assert [d[1] for d in lite.execute("PRAGMA table_info(neurons)").fetchall()] == columns
    assert sorted(lite.execute("SELECT * FROM neurons").fetchall(), key=repr) == sorted(view, key=repr)
