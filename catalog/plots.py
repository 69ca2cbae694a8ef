"""The papers' figures as PNGs, from rows any SQL engine returns (DuckDB or the published SQLite).

Each figure is (portable SQL with ``?`` parameters, a function drawing its rows), so
`neurocat plot` and the Datasette pages draw the same thing.
"""
from __future__ import annotations

import io
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

BIN_COLORS = {"alpha": plt.cm.Reds, "gamma": plt.cm.Blues}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _selectivity_bins(rows) -> bytes:
    """Rafegas Fig. 5-6: per layer, stacked fractions of neurons in each 0.1 bin of α and γ."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, index in zip(axes, ("alpha", "gamma")):
        layers, data = [], defaultdict(dict)
        for layer, idx, b, fraction in rows:
            if idx != index:
                continue
            if layer not in layers:
                layers.append(layer)
            data[layer][b] = fraction or 0.0
        bottom = np.zeros(len(layers))
        for b in range(10):
            heights = np.array([data[layer].get(b, 0.0) for layer in layers])
            ax.bar(range(len(layers)), heights, bottom=bottom, color=BIN_COLORS[index](0.15 + 0.085 * b),
                   label=f"{b / 10:.1f}–{(b + 1) / 10:.1f}")
            bottom += heights
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{'colour selectivity α' if index == 'alpha' else 'class selectivity γ'} per layer")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("fraction of live neurons")
    axes[1].legend(title="bin", fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _png(fig)


def _hue_distribution(rows) -> bytes:
    """ICLR draft Fig. 7: hues of the colour-selective neurons, on the opponent (O1, O2) circle."""
    hues = np.array([r[0] for r in rows if r[0] is not None], dtype=float)
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="polar")
    edges = np.linspace(0, 360, 37)
    counts, _ = np.histogram(hues, bins=edges)
    centres = np.deg2rad(edges[:-1] + 5)
    colors = [_opponent_hue_rgb(h) for h in edges[:-1] + 5]
    ax.bar(centres, counts, width=np.deg2rad(10), color=colors, edgecolor="black", linewidth=0.3)
    ax.set_title(f"hue of {len(hues)} colour-selective neurons")
    return _png(fig)


def _opponent_hue_rgb(angle: float):
    # A display colour for an opponent-plane angle: a mid-gray pushed along (O1, O2).
    o1, o2 = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    rgb = np.array([0.5, 0.5, 0.5]) + 0.35 * np.array([o1 / np.sqrt(2) + o2 / np.sqrt(6),
                                                       -o1 / np.sqrt(2) + o2 / np.sqrt(6), -2 * o2 / np.sqrt(6)])
    return tuple(np.clip(rgb, 0, 1))


def _ranked_curves(rows) -> bytes:
    """Rafegas Fig. 1: mean relative activation against rank, one curve per layer."""
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = defaultdict(list)
    for layer, rank, rel in rows:
        curves[layer].append((rank, rel))
    for layer, points in curves.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], label=f"layer {layer}")  # "_x" labels are hidden
    ax.set_xlabel("rank of the image")
    ax.set_ylabel("mean relative activation")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("ranked activation curves")
    return _png(fig)


def _mf_degree(rows) -> bytes:
    """Sadeghi Fig. 2-3: mean MF degree and share of single-faceted neurons per layer."""
    layers = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(range(len(rows)), [r[1] or 0 for r in rows], color="tab:purple")
    ax.set_ylabel("mean MF degree")
    ax2 = ax.twinx()
    ax2.plot(range(len(rows)), [r[2] or 0 for r in rows], "o-", color="black")
    ax2.set_ylabel("single-faceted fraction")
    ax2.set_ylim(0, 1)
    ax.set_xticks(range(len(rows)), layers, rotation=45, ha="right", fontsize=8)
    ax.set_title("multi-faceted degree per layer")
    return _png(fig)


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
    "selectivity_bins": ("SELECT layer, \"index\", bin, fraction FROM layer_selectivity_bins "
                         "WHERE model = ? AND dataset = ? ORDER BY layer_index, \"index\", bin", _selectivity_bins),
    "hue_distribution": ("SELECT hue FROM color_selective_neurons WHERE model = ? AND dataset = ?", _hue_distribution),
    "ranked_curves": ("SELECT t.layer, t.rank, AVG(t.rel_activation) FROM top_images t JOIN units u "
                      "ON u.model = t.model AND u.dataset = t.dataset AND u.layer = t.layer AND u.unit = t.unit "
                      "WHERE t.model = ? AND t.dataset = ? AND NOT u.dead GROUP BY t.layer, t.rank "
                      "ORDER BY t.layer, t.rank", _ranked_curves),
    "mf_degree": ("SELECT layer, mean_mf_degree, single_faceted_fraction FROM faceted_by_layer "
                  "WHERE model = ? AND dataset = ? ORDER BY layer_index", _mf_degree),
}
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


# Transparent pixels are composited on this gray, as ingest/data.py does (contact sheets show what the model saw).
BACKGROUND = (128, 128, 128)


def read_rgb(path, size: int | None = None):
    """Decode any still image to 8-bit RGB: alpha composited on gray, 16-bit rescaled, CMYK converted.

    With ``size``, a JPEG at least twice as large is decoded at a reduced scale by libjpeg, keeping its
    shorter side >= ``size``. The same decoding as ingest/data.py's ``read_rgb`` (its CPU path), without
    torch: tests/test_reading.py compares them pixel for pixel.
    """
    import math

    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if size and im.format == "JPEG" and min(im.size) >= 2 * size:
            scale = size / min(im.size)
            im.draft("RGB", (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
        im = ImageOps.exif_transpose(im)
        im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        if im.mode == "F" and a.max() <= 1.0:
            top = 1.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, BACKGROUND + (255,))
        im = Image.alpha_composite(canvas, im)
    return im.convert("RGB")


def model_view(im, size: int):
    """The image as the model saw it (shorter side resized to ``size``, centre crop), a ``size`` square RGB image.

    Same geometry and resampling as ingest/data.py's ``model_view`` (PIL bilinear there too), so crop
    boxes stored by ingest land on the same pixels: equal bytes, tested.
    """
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def contact_sheet(root: str, image_size: int, rows, cell: int = 96, columns: int = 10) -> bytes:
    """The top crops of a neuron as one picture; rows are (path, crop_top, crop_left, crop_size)."""
    from pathlib import Path

    from PIL import Image

    rows = list(rows)
    n_rows = max(1, -(-len(rows) // columns))
    sheet = Image.new("RGB", (columns * cell, n_rows * cell), (255, 255, 255))
    for i, (path, top, left, size) in enumerate(rows):
        p = Path(path) if Path(path).is_absolute() else Path(root) / path
        try:
            view = model_view(read_rgb(p, image_size), image_size)
        except Exception:  # noqa: BLE001 - a file gone since ingest leaves a blank cell
            continue
        canvas = Image.new("RGB", (size, size), BACKGROUND)
        canvas.paste(view, (-left, -top))
        sheet.paste(canvas.resize((cell, cell), Image.Resampling.BILINEAR), ((i % columns) * cell, (i // columns) * cell))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
