"""The papers' figures as PNGs, from rows any SQL engine returns (DuckDB or the published SQLite).

Each figure is (portable SQL with ``?`` parameters, a function drawing its rows), so
`neurocat plot` and the Datasette pages draw the same thing.
"""
from __future__ import annotations

import io
import math
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from .images import BACKGROUND, model_view, read_rgb  # noqa: E402,F401 - contact sheets read images as ingest did

BIN_COLORS = {"alpha": plt.cm.Reds, "gamma": plt.cm.Blues}
MAX_LAYER_LABELS = 24  # tick labels on a layer axis; a deeper model gets every k-th layer named


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _layer_axis(ax, layers: list[str]) -> None:
    """Layers in model order on the x axis of ``ax`` (positions 0..n-1): every layer named up to
    ``MAX_LAYER_LABELS``, else every k-th one and the last, rotated so long dotted names never overlap."""
    n = len(layers)
    step = max(1, math.ceil(n / MAX_LAYER_LABELS))
    ticks = list(range(0, n, step))
    if n and ticks[-1] != n - 1:
        if n - 1 - ticks[-1] < step / 2:
            ticks.pop()
        ticks.append(n - 1)
    few = n <= 8
    ax.set_xticks(ticks, [layers[i] for i in ticks], rotation=40 if few else 90, ha="right" if few else "center",
                  fontsize=8 if n <= MAX_LAYER_LABELS else 7)
    if step > 1:
        ax.set_xticks(range(n), minor=True)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel(f"layer, input → output ({n} layer{'s' if n != 1 else ''}"
                  f"{f'; one in {step} named' if step > 1 else ''})", fontsize=9)


def selectivity_bins_figure(rows):
    """Rafegas Fig. 5-6 for any depth: per layer (model order), the stacked fractions of live neurons in
    each 0.1 bin of α (top) and γ (bottom), bars touching so 50 layers read as bands; on α, the
    colour-selective share of the layer (α ≥ the model's colour threshold, of all its neurons).

    Rows: (layer, index, bin, fraction, color_selective_fraction), in layer order.
    """
    layers, data, share = [], {"alpha": defaultdict(dict), "gamma": defaultdict(dict)}, {}
    for layer, idx, b, fraction, colour in rows:
        if layer not in layers:
            layers.append(layer)
        if idx in data:
            data[idx][layer][b] = fraction or 0.0
        share[layer] = colour
    n = len(layers)
    fig, axes = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True, gridspec_kw={"hspace": 0.12})
    width = 0.8 if n <= 12 else 1.0
    for ax, index in zip(axes, ("alpha", "gamma")):
        bottom = np.zeros(n)
        for b in range(10):
            heights = np.array([data[index][layer].get(b, 0.0) for layer in layers])
            ax.bar(range(n), heights, bottom=bottom, width=width, color=BIN_COLORS[index](0.15 + 0.085 * b),
                   label=f"{b / 10:.1f}–{(b + 1) / 10:.1f}", linewidth=0)
            bottom += heights
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("fraction of live neurons")
        name = "colour selectivity α" if index == "alpha" else "class selectivity γ"
        ax.set_title(f"{name} per layer", fontsize=10, loc="left")
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], title=f"{'α' if index == 'alpha' else 'γ'} bin", fontsize=7,
                  title_fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    line = [share[layer] if share[layer] is not None else np.nan for layer in layers]
    axes[0].plot(range(n), line, color="black", marker="o" if n <= 24 else None, markersize=5, linewidth=1.5,
                 markeredgecolor="white", label="colour-selective share", gid="color_share")
    axes[0].annotate("— colour-selective share\n   (α ≥ threshold, of all neurons)", xy=(1.01, 0.02),
                     xycoords="axes fraction", fontsize=7, va="bottom")
    _layer_axis(axes[1], layers)
    return fig


def _selectivity_bins(rows) -> bytes:
    return _png(selectivity_bins_figure(rows))


def hue_distribution_figure(rows):
    """ICLR draft Fig. 7: hues of the colour-selective neurons on the opponent (O1, O2) circle (left), and
    per layer (right: neurons in each 10° sector, layers in model order) so a deep model stays readable.

    Rows: (layer, hue) in layer order; hue NULL for a layer without colour-selective neurons.
    """
    layers, per_layer = [], defaultdict(list)
    for layer, hue in rows:
        if layer not in layers:
            layers.append(layer)
        if hue is not None:
            per_layer[layer].append(float(hue) % 360)
    hues = np.array([h for layer in layers for h in per_layer[layer]], dtype=float)
    edges = np.linspace(0, 360, 37)
    fig = plt.figure(figsize=(12, 4.8))
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 0.12, 0.04, 1.9], wspace=0.05)
    ax = fig.add_subplot(grid[0], projection="polar")
    counts, _ = np.histogram(hues, bins=edges)
    colors = [_opponent_hue_rgb(h) for h in edges[:-1] + 5]
    ax.bar(np.deg2rad(edges[:-1] + 5), counts, width=np.deg2rad(10), color=colors, edgecolor="black", linewidth=0.3)
    ax.set_title(f"hue of {len(hues)} colour-selective neurons", fontsize=10)
    ax.tick_params(labelsize=7)
    strip = fig.add_subplot(grid[2])
    strip.imshow(np.array(colors)[::-1, None, :], aspect="auto", extent=(0, 1, 0, 360))
    strip.set_xticks([])
    strip.set_yticks(range(0, 361, 60), [f"{d}°" for d in range(0, 361, 60)], fontsize=8)
    strip.set_ylabel("hue (opponent angle)", fontsize=8)
    heat = fig.add_subplot(grid[3])
    matrix = np.array([np.histogram(per_layer[layer], bins=edges)[0] for layer in layers], dtype=float).T
    if not layers:
        matrix = np.zeros((36, 1))
    image = heat.imshow(matrix, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
                        extent=(-0.5, max(len(layers), 1) - 0.5, 0, 360), vmin=0, vmax=max(1.0, matrix.max()))
    heat.set_yticks(range(0, 361, 60), [])
    heat.set_title("colour-selective neurons per layer and 10° hue sector", fontsize=10, loc="left")
    bar = fig.colorbar(image, ax=heat, fraction=0.03, pad=0.01)
    bar.set_label("neurons", fontsize=8)
    bar.locator = matplotlib.ticker.MaxNLocator(integer=True)  # counts
    bar.update_ticks()
    _layer_axis(heat, layers)
    return fig


def _hue_distribution(rows) -> bytes:
    return _png(hue_distribution_figure(rows))


def _opponent_hue_rgb(angle: float):
    # A display colour for an opponent-plane angle: a mid-gray pushed along (O1, O2).
    o1, o2 = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    rgb = np.array([0.5, 0.5, 0.5]) + 0.35 * np.array([o1 / np.sqrt(2) + o2 / np.sqrt(6),
                                                       -o1 / np.sqrt(2) + o2 / np.sqrt(6), -2 * o2 / np.sqrt(6)])
    return tuple(np.clip(rgb, 0, 1))


def ranked_curves_figure(rows):
    """Rafegas Fig. 1: mean relative activation of the live neurons against rank, one curve per layer,
    coloured by depth (a colour bar names the layers when there are too many for a legend).

    Rows: (layer, layer_index, rank, mean relative activation), in layer order.
    """
    curves, order = defaultdict(list), {}
    for layer, index, rank, rel in rows:
        curves[layer].append((rank, rel))
        order[layer] = index
    layers = sorted(curves, key=lambda layer: (order[layer] is None, order[layer], layer))
    n = len(layers)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    cmap = plt.cm.viridis
    for i, layer in enumerate(layers):
        points = sorted(curves[layer])
        ax.plot([p[0] for p in points], [p[1] for p in points], color=cmap(i / max(n - 1, 1)),
                linewidth=1.4 if n <= 12 else 0.9, label=f"layer {layer}", gid=f"curve:{layer}")
    ax.set_xlabel("rank of the image")
    ax.set_ylabel("mean relative activation")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"ranked activation curves ({n} layer{'s' if n != 1 else ''})", fontsize=10)
    if n <= 12:
        ax.legend(fontsize=7)  # "_x" labels are hidden, hence "layer x"
    else:
        bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(-0.5, n - 0.5)), ax=ax, pad=0.01)
        step = max(1, math.ceil(n / 12))
        ticks = sorted(set(range(0, n, step)) | {n - 1})
        bar.set_ticks(ticks, labels=[layers[i] for i in ticks], fontsize=7)
        bar.set_label("layer (input → output)", fontsize=8)
    return fig


def _ranked_curves(rows) -> bytes:
    return _png(ranked_curves_figure(rows))


def mf_degree_figure(rows):
    """Sadeghi Fig. 2-3 for any depth: mean MF degree (top) and single-faceted share (bottom) per layer,
    as lines over the layers in model order.

    Rows: (layer, mean_mf_degree, single_faceted_fraction), in layer order.
    """
    layers = [r[0] for r in rows]
    n = len(layers)
    marker = "o" if n <= 24 else "."
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"hspace": 0.12})
    degree = [r[1] if r[1] is not None else np.nan for r in rows]
    single = [r[2] if r[2] is not None else np.nan for r in rows]
    axes[0].plot(range(n), degree, marker=marker, color="tab:purple", gid="mf_degree")
    axes[0].set_ylabel("mean MF degree")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title("multi-faceted degree per layer (flatness / sparsity of the CoF rows)", fontsize=10,
                      loc="left")
    axes[1].plot(range(n), single, marker=marker, color="black", gid="single_faceted")
    axes[1].set_ylabel("single-faceted share")
    axes[1].set_ylim(0, 1.02)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    _layer_axis(axes[1], layers)
    return fig


def _mf_degree(rows) -> bytes:
    return _png(mf_degree_figure(rows))


def invariance_by_layer_figure(rows):
    """Orientation- and symmetry-selective shares per layer (docs/science.md §21), as lines over the layers
    in model order: of the neurons that have the index, the share the views orientation_selective_neurons
    and symmetry_selective_neurons list. A layer without the index (the analyses are opt-in and per
    layer) leaves a gap, not a 0.

    Rows: (layer, orientation share, neurons with an orientation_index, symmetry share, neurons with a
    symmetry_index), in layer order; a share is NULL where its count is 0.
    """
    layers = [r[0] for r in rows]
    n = len(layers)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for column, name, colour, gid in ((1, "orientation-selective share (orientation_selective_neurons)",
                                       "tab:orange", "orientation_share"),
                                      (3, "mirror-symmetric share (symmetry_selective_neurons)", "tab:green",
                                       "symmetry_share")):
        values = [r[column] if r[column] is not None else np.nan for r in rows]
        ax.plot(range(n), values, marker="o", markersize=5 if n <= 24 else 3, color=colour, label=name, gid=gid)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("share of the neurons measured")
    ax.set_title("orientation and symmetry selectivity per layer", fontsize=10, loc="left")
    ax.grid(axis="y", alpha=0.3)
    if not any(r[2] or r[4] for r in rows):
        ax.text(0.5, 0.5, "no orientation or symmetry data: neurocat analyze orientation|symmetry",
                transform=ax.transAxes, ha="center", va="center", fontsize=10, color="gray", gid="no_data")
    else:
        ax.legend(fontsize=8, loc="upper left")
    _layer_axis(ax, layers)
    return fig


def _invariance_by_layer(rows) -> bytes:
    return _png(invariance_by_layer_figure(rows))


def orientation_tuning_chart(rows) -> bytes:
    """``orientation_tuning_figure`` as PNG bytes (the neuron page's orientation.png)."""
    return _png(orientation_tuning_figure(rows))


def orientation_tuning_figure(rows):
    """A neuron's orientation tuning curve as a polar plot (a matplotlib Figure; its first line is the
    curve): retention r(θ) of its response when the receptive fields of its top images turn by θ
    (docs/science.md §21), closed at 360°.

    Rows: (angle in degrees, retention, ...), in angle order.
    """
    angles = np.deg2rad([float(r[0]) for r in rows] + [float(rows[0][0]) + 360.0])
    values = [float(r[1]) for r in rows] + [float(rows[0][1])]
    fig, ax = plt.subplots(figsize=(3.6, 3.6), subplot_kw={"projection": "polar"})
    ax.plot(angles, values, color="tab:orange", marker="o", markersize=3, linewidth=1.5)
    ax.fill(angles, values, color="tab:orange", alpha=0.2)
    ax.set_rlim(0, max(1.0, max(values)) * 1.05)
    ax.set_thetagrids(range(0, 360, 45), fontsize=7)
    ax.set_rlabel_position(22.5)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("retention r(θ) per rotation θ", fontsize=9)
    return fig


def class_frequency_chart(rows) -> bytes:
    """A neuron's strongest classes by f_c (label, frequency, count)."""
    rows = list(rows)[:20][::-1]
    fig, ax = plt.subplots(figsize=(5, 0.3 * max(3, len(rows)) + 0.8))
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
    for i, r in enumerate(rows):
        ax.text(r[1], i, f" {r[2]}", va="center", fontsize=7)
    ax.set_xlabel("f_c (share of relative activation); label: top images of the class")
    ax.set_xlim(0, 1.1)
    return _png(fig)


# Every figure is of one run: (model, dataset) are its two parameters, in that order.
FIGURES = {
    "selectivity_bins": ("SELECT b.layer, b.\"index\", b.bin, b.fraction, s.color_selective_fraction "
                         "FROM layer_selectivity_bins b JOIN layer_summary s ON s.model = b.model "
                         "AND s.dataset = b.dataset AND s.layer = b.layer WHERE b.model = ? AND b.dataset = ? "
                         "ORDER BY b.layer_index, b.layer, b.\"index\", b.bin", _selectivity_bins),
    "hue_distribution": ("SELECT l.layer, c.hue FROM layers l LEFT JOIN color_selective_neurons c "
                         "ON c.model = l.model AND c.dataset = l.dataset AND c.layer = l.layer "
                         "WHERE l.model = ? AND l.dataset = ? ORDER BY l.layer_index, l.layer, c.hue",
                         _hue_distribution),
    "ranked_curves": ("SELECT t.layer, l.layer_index, t.rank, AVG(t.rel_activation) FROM top_images t JOIN units u "
                      "ON u.model = t.model AND u.dataset = t.dataset AND u.layer = t.layer AND u.unit = t.unit "
                      "JOIN layers l ON l.model = t.model AND l.dataset = t.dataset AND l.layer = t.layer "
                      "WHERE t.model = ? AND t.dataset = ? AND NOT u.dead GROUP BY t.layer, l.layer_index, t.rank "
                      "ORDER BY l.layer_index, t.layer, t.rank", _ranked_curves),
    "mf_degree": ("SELECT layer, mean_mf_degree, single_faceted_fraction FROM faceted_by_layer "
                  "WHERE model = ? AND dataset = ? ORDER BY layer_index, layer", _mf_degree),
    # The views decide what is selective (their thresholds live in queries/*.sql, not here).
    "invariance_by_layer": (
        "SELECT l.layer, CASE WHEN c.n_orientation > 0 THEN CAST(COALESCE(o.n, 0) AS DOUBLE) / c.n_orientation END, "
        "COALESCE(c.n_orientation, 0), "
        "CASE WHEN c.n_symmetry > 0 THEN CAST(COALESCE(s.n, 0) AS DOUBLE) / c.n_symmetry END, "
        "COALESCE(c.n_symmetry, 0) FROM layers l "
        "LEFT JOIN (SELECT model, dataset, layer, COUNT(orientation_index) AS n_orientation, "
        "COUNT(symmetry_index) AS n_symmetry FROM neurons GROUP BY model, dataset, layer) c "
        "ON c.model = l.model AND c.dataset = l.dataset AND c.layer = l.layer "
        "LEFT JOIN (SELECT model, dataset, layer, COUNT(*) AS n FROM orientation_selective_neurons "
        "GROUP BY model, dataset, layer) o ON o.model = l.model AND o.dataset = l.dataset AND o.layer = l.layer "
        "LEFT JOIN (SELECT model, dataset, layer, COUNT(*) AS n FROM symmetry_selective_neurons "
        "GROUP BY model, dataset, layer) s ON s.model = l.model AND s.dataset = l.dataset AND s.layer = l.layer "
        "WHERE l.model = ? AND l.dataset = ? ORDER BY l.layer_index, l.layer", _invariance_by_layer),
}
FIGURE_CAPTIONS = {
    "selectivity_bins": "α and γ of the live neurons per layer, with the colour-selective share (Rafegas Figs. 5–6)",
    "hue_distribution": "hues of the colour-selective neurons, all and per layer (ICLR draft Fig. 7)",
    "ranked_curves": "ranked activation curves, one per layer (Rafegas Fig. 1)",
    "mf_degree": "multi-faceted degree and single-faceted share per layer (Sadeghi Figs. 2–3)",
    "invariance_by_layer": "orientation- and symmetry-selective shares per layer, of the neurons measured "
                           "(neurocat analyze orientation|symmetry; docs/science.md §21)",
}
# The figure before it becomes a PNG (matplotlib Figure; close it), for tests and notebooks.
FIGURE_BUILDERS = {"selectivity_bins": selectivity_bins_figure, "hue_distribution": hue_distribution_figure,
                   "ranked_curves": ranked_curves_figure, "mf_degree": mf_degree_figure,
                   "invariance_by_layer": invariance_by_layer_figure}
# A neuron's orientation tuning curve and its four mirror retentions (docs/science.md §21).
ORIENTATION_TUNING_SQL = ("SELECT angle, retention, n_images FROM orientation_tuning WHERE model = ? AND dataset = ? "
                          "AND layer = ? AND unit = ? ORDER BY angle")
SYMMETRY_AXES_SQL = ("SELECT axis, retention, n_images FROM symmetry_axes WHERE model = ? AND dataset = ? "
                     "AND layer = ? AND unit = ? ORDER BY axis")
CLASS_FREQUENCIES_SQL = ("SELECT label, frequency, count FROM class_frequencies WHERE model = ? AND dataset = ? "
                         "AND layer = ? AND unit = ? ORDER BY frequency DESC, label LIMIT 20")


def figure(name: str, fetch, model: str, dataset: str) -> bytes:
    """Draw figure ``name`` for the run (``model``, ``dataset``); ``fetch(sql, params)`` returns rows as tuples."""
    sql, draw = FIGURES[name]
    return draw(fetch(sql, [model, dataset]))


def write_figures(cat, model: str, dataset: str | None, out_dir) -> list:
    """Every figure of the run (``model``, ``dataset``; the dataset may be left out when the model has
    one) as ``out_dir/<model>-<dataset>-<figure>.png``; returns the paths."""
    from pathlib import Path

    dataset = cat.run(model, dataset)["dataset"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in FIGURES:
        path = out_dir / f"{model}-{dataset}-{name}.png"
        path.write_bytes(figure(name, cat.rows, model, dataset))
        paths.append(path)
    return paths


def _crop(root: str, image_size: int, path: str, top: int, left: int, size: int):
    """The receptive-field crop of a top image as the model saw it (``size`` square, gray beyond the
    image), or None when the file cannot be read any more."""
    from pathlib import Path

    from PIL import Image

    p = Path(path) if Path(path).is_absolute() else Path(root) / path
    try:
        view = model_view(read_rgb(p, image_size), image_size)
    except Exception:  # noqa: BLE001 - a file gone since ingest
        return None
    canvas = Image.new("RGB", (size, size), BACKGROUND)
    canvas.paste(view, (-left, -top))
    return canvas


def contact_sheet(root: str, image_size: int, rows, cell: int = 96, columns: int = 10) -> bytes:
    """The top crops of a neuron as one picture; rows are (path, crop_top, crop_left, crop_size)."""
    from PIL import Image

    rows = list(rows)
    n_rows = max(1, -(-len(rows) // columns))
    sheet = Image.new("RGB", (columns * cell, n_rows * cell), (255, 255, 255))
    for i, (path, top, left, size) in enumerate(rows):
        crop = _crop(root, image_size, path, top, left, size)
        if crop is not None:  # a file gone since ingest leaves a blank cell
            sheet.paste(crop.resize((cell, cell), Image.Resampling.BILINEAR), ((i % columns) * cell, (i // columns) * cell))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def crop_png(root: str, image_size: int, path: str, top: int, left: int, size: int, cell: int = 48) -> bytes | None:
    """One top image's crop as a ``cell`` px PNG (a table thumbnail), or None when its file is gone."""
    from PIL import Image

    crop = _crop(root, image_size, path, top, left, size)
    if crop is None:
        return None
    buf = io.BytesIO()
    crop.resize((cell, cell), Image.Resampling.BILINEAR).save(buf, format="PNG")
    return buf.getvalue()


# Linear CKA of two models' layers (`neurocat compare --activations`; docs/science.md §23): params
# ``cka_args(model, other, dataset)``. `compare` stores one direction (A × B); CKA is symmetric, so B × A reads
# the same rows transposed. publish.INDEXES serves both halves.
CKA_SQL = ("SELECT c.layer_a, c.layer_b, c.cka, c.estimator, c.n_images FROM ("
           "SELECT dataset, model_a, layer_a, model_b, layer_b, cka, estimator, n_images FROM layer_cka "
           "WHERE model_a = ? AND model_b = ? AND dataset = ? UNION ALL "
           "SELECT dataset, model_b, layer_b, model_a, layer_a, cka, estimator, n_images FROM layer_cka "
           "WHERE model_a = ? AND model_b = ? AND dataset = ? AND model_a <> model_b) c "
           "JOIN layers la ON la.model = c.model_a AND la.dataset = c.dataset AND la.layer = c.layer_a "
           "JOIN layers lb ON lb.model = c.model_b AND lb.dataset = c.dataset AND lb.layer = c.layer_b "
           "ORDER BY la.layer_index, lb.layer_index")
# The models compared with one (either direction): params ``cka_others_args(model, dataset)``.
CKA_OTHERS_SQL = ("SELECT model_b FROM layer_cka WHERE model_a = ? AND dataset = ? AND model_b <> model_a UNION "
                  "SELECT model_a FROM layer_cka WHERE model_b = ? AND dataset = ? AND model_a <> model_b ORDER BY 1")


def cka_args(model: str, other: str, dataset: str) -> list:
    """CKA_SQL's parameters for ``model`` (rows) × ``other`` (columns) on ``dataset``."""
    return [model, other, dataset, other, model, dataset]


def cka_others_args(model: str, dataset: str) -> list:
    """CKA_OTHERS_SQL's parameters."""
    return [model, dataset, model, dataset]


def cka_heatmap_figure(rows, model_a: str, model_b: str):
    """Layers of ``model_a`` (rows, input at the top) × layers of ``model_b`` (columns), coloured by CKA."""
    layers_a = list(dict.fromkeys(r[0] for r in rows))
    layers_b = list(dict.fromkeys(r[1] for r in rows))
    grid = np.full((len(layers_a), len(layers_b)), np.nan)
    index_a, index_b = {n: i for i, n in enumerate(layers_a)}, {n: i for i, n in enumerate(layers_b)}
    for la, lb, value, *_ in rows:
        grid[index_a[la], index_b[lb]] = np.nan if value is None else value
    side = min(12.0, 3.0 + 0.18 * max(len(layers_a), len(layers_b), 1))
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(grid, cmap="magma", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    _layer_axis(ax, layers_b)
    ax.set_xlabel(f"{model_b}: {ax.get_xlabel()}", fontsize=9)
    step = max(1, math.ceil(len(layers_a) / MAX_LAYER_LABELS))
    ticks = list(range(0, len(layers_a), step))
    ax.set_yticks(ticks, [layers_a[i] for i in ticks], fontsize=8 if len(layers_a) <= MAX_LAYER_LABELS else 7)
    ax.set_ylabel(f"{model_a}: layer, input ↓ output")
    estimator = rows[0][3] if rows else ""
    n = rows[0][4] if rows else 0
    ax.set_title(f"linear CKA ({estimator} estimator, {n} images)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="CKA")
    return fig


def cka_heatmap(rows, model_a: str, model_b: str) -> bytes:
    return _png(cka_heatmap_figure(rows, model_a, model_b))


def write_cka(cat, model: str, other: str, dataset: str | None, out_dir):
    """``out_dir/<model>-<other>-<dataset>-cka.png`` from ``layer_cka``; a ValueError when the pair was never compared."""
    from pathlib import Path

    dataset = cat.run(model, dataset)["dataset"]
    rows = cat.rows(CKA_SQL, cka_args(model, other, dataset))
    if not rows:
        raise ValueError(f"no layer CKA of {model!r} against {other!r} on {dataset!r}: "
                         f"run `neurocat compare {model} {other} --activations` first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model}-{other}-{dataset}-cka.png"
    path.write_bytes(cka_heatmap(rows, model, other))
    return path
