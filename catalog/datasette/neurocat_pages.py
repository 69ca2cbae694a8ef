"""Datasette plugin: neuron and model pages with pictures, and links to them from table cells.

Loaded with ``--plugins-dir`` by `neurocat serve`; pages are the Jinja templates beside it.
"""
from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from datasette import hookimpl
from datasette.utils.asgi import Response
from markupsafe import Markup, escape

from catalog import plots


def _db(datasette):
    return datasette.get_database()


async def _rows(datasette, sql, params):
    return [tuple(r) for r in (await _db(datasette).execute(sql, params)).rows]


def _neuron_key(request):
    a = request.args
    try:
        return a["model"], a["dataset"], a["layer"], int(a["unit"])
    except (KeyError, ValueError):
        return None


def _png(data: bytes | None) -> Response:
    if data is None:
        return Response.text("no image", status=404)
    return Response(data, content_type="image/png", headers={"Cache-Control": "max-age=3600"})


async def neuron_page(datasette, request):
    key = _neuron_key(request)
    if key is None:
        return Response.text("give model, dataset, layer and unit", status=400)
    rows = (await _db(datasette).execute(
        "SELECT * FROM neurons WHERE model = ? AND dataset = ? AND layer = ? AND unit = ?", list(key))).rows
    if not rows:
        return Response.text("no such neuron", status=404)
    neuron = dict(rows[0])
    neuron.pop("nf_png")
    similar = await _rows(datasette, "SELECT s.unit_b, s.pearson, s.euclidean FROM similarity_pairs s "
                                     "WHERE s.model = ? AND s.dataset = ? AND s.layer = ? AND s.unit_a = ? "
                                     "ORDER BY s.rank", list(key))
    classes = await _rows(datasette, plots.CLASS_FREQUENCIES_SQL, list(key))
    pictures = await _rows(datasette, "SELECT kind, rank, image_id, value FROM visualizations WHERE model = ? "
                                      "AND dataset = ? AND layer = ? AND unit = ? ORDER BY kind, rank", list(key))
    query = urlencode(dict(zip(("model", "dataset", "layer", "unit"), map(str, key))))
    link = lambda unit: "/-/neuron?" + urlencode({"model": key[0], "dataset": key[1], "layer": key[2], "unit": unit})  # noqa: E731
    return Response.html(await datasette.render_template("neuron.html", {
        "neuron": neuron, "query": query, "similar": [(u, p, e, link(u)) for u, p, e in similar],
        "classes": classes, "key": key,
        "optimised": [(kind, value) for kind, _, _, value in pictures if kind != "gradcam"],
        "gradcams": [(rank, image_id, value) for kind, rank, image_id, value in pictures if kind == "gradcam"]},
        request=request))


async def nf_png(datasette, request):
    key = _neuron_key(request)
    rows = await _rows(datasette, "SELECT nf_png FROM units WHERE model = ? AND dataset = ? AND layer = ? AND unit = ?",
                       list(key or ("", "", "", -1)))
    return _png(rows[0][0] if rows else None)


async def visualization_png(datasette, request):
    key = _neuron_key(request)
    try:
        kind, rank = request.args["kind"], int(request.args.get("rank", 0))
    except (KeyError, ValueError):
        return _png(None)
    rows = await _rows(datasette, "SELECT png FROM visualizations WHERE model = ? AND dataset = ? AND layer = ? "
                                  "AND unit = ? AND kind = ? AND rank = ?", list(key or ("", "", "", -1)) + [kind, rank])
    return _png(rows[0][0] if rows else None)


async def sheet_png(datasette, request):
    key = _neuron_key(request)
    if key is None:
        return _png(None)
    info = await _rows(datasette, "SELECT d.root, m.image_size FROM models m JOIN datasets d ON d.dataset = m.dataset "
                                  "WHERE m.model = ? AND m.dataset = ?", list(key[:2]))
    rows = await _rows(datasette, "SELECT i.path, t.crop_top, t.crop_left, t.crop_size FROM top_images t "
                                  "JOIN images i ON i.dataset = t.dataset AND i.image_id = t.image_id "
                                  "WHERE t.model = ? AND t.dataset = ? AND t.layer = ? AND t.unit = ? "
                                  "ORDER BY t.rank LIMIT 100", list(key))
    if not info or not rows:
        return _png(None)
    return _png(await asyncio.to_thread(plots.contact_sheet, info[0][0], info[0][1], rows))


async def classes_png(datasette, request):
    key = _neuron_key(request)
    rows = await _rows(datasette, plots.CLASS_FREQUENCIES_SQL, list(key or ("", "", "", -1)))
    return _png(await asyncio.to_thread(plots.class_frequency_chart, rows) if rows else None)


async def model_page(datasette, request):
    """One run's page: a model on one data set (?model=&dataset=; without dataset, the model's first)."""
    runs = await _rows(datasette, "SELECT model, dataset, architecture, n_images, n_neurons FROM models "
                                  "ORDER BY model, dataset", [])
    model, dataset = request.args.get("model"), request.args.get("dataset")
    chosen = next((r[:2] for r in runs if (model is None or r[0] == model) and (dataset is None or r[1] == dataset)),
                  None)
    if chosen is None and (model or dataset):
        return Response.text(f"no run of model {model!r}{f' on {dataset!r}' if dataset else ''}", status=404)
    layers = await _rows(datasette, "SELECT layer, channels, rf_size, n_dead, mean_alpha, mean_gamma, "
                                    "color_selective_fraction FROM layer_summary WHERE model = ? AND dataset = ? "
                                    "ORDER BY layer_index", list(chosen or ("", "")))
    return Response.html(await datasette.render_template("model.html", {
        "runs": runs, "chosen": chosen, "layers": layers, "figures": list(plots.FIGURES),
        "encode": lambda **kw: urlencode(kw), "database": _db(datasette).name}, request=request))


async def model_plot(datasette, request):
    name, model, dataset = (request.args.get(k) for k in ("figure", "model", "dataset"))
    if name not in plots.FIGURES or not model or not dataset:
        return _png(None)
    sql, draw = plots.FIGURES[name]
    rows = await _rows(datasette, sql, [model, dataset])
    return _png(await asyncio.to_thread(draw, rows))


@hookimpl
def register_routes():
    return [
        (r"^/-/neuron$", neuron_page),
        (r"^/-/neuron/nf\.png$", nf_png),
        (r"^/-/neuron/sheet\.png$", sheet_png),
        (r"^/-/neuron/visualization\.png$", visualization_png),
        (r"^/-/neuron/classes\.png$", classes_png),
        (r"^/-/model$", model_page),
        (r"^/-/model/plot\.png$", model_plot),
    ]


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    """A neuron's unit number links to its page wherever a row names model, dataset and layer."""
    if column not in ("unit", "unit_b", "critical_unit") or value is None:
        return None
    keys = row.keys() if hasattr(row, "keys") else []
    if not all(k in keys for k in ("model", "dataset", "layer")):
        return None
    href = "/-/neuron?" + urlencode({"model": row["model"], "dataset": row["dataset"], "layer": row["layer"],
                                     "unit": value})
    return Markup(f'<a href="{escape(href)}">{escape(value)}</a>')
