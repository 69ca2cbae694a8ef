"""Datasette plugin: the catalogue's front page, neuron and model pages with pictures, and how table
cells show (links to those pages, 48 px pictures, floats to 3 significant digits).

Loaded with ``--plugins-dir`` by `neurocat serve`; pages are the Jinja templates beside it. What a table
page shows (column order, pictures added, columns left out) comes from the metadata `publish` writes
(``plugins.neurocat`` of a table); only the HTML changes, JSON and CSV keep every column and full precision.
"""
from __future__ import annotations

import asyncio
import base64
import math
from urllib.parse import urlencode

from datasette import hookimpl
from datasette.utils.asgi import Response
from markupsafe import Markup, escape

from catalog import plots
from catalog.compare import MATCH_THRESHOLD
from catalog.publish import CANNED

# A neuron's partners in other models, (dataset, model, layer, unit); publish.INDEXES serves it.
PARTNERS_SQL = ("SELECT m.model_b, m.layer_b, m.unit_b, m.correlation, m.kind FROM unit_matches m "
                "WHERE m.dataset = ? AND m.model_a = ? AND m.layer_a = ? AND m.unit_a = ? "
                "AND m.model_b <> m.model_a ORDER BY m.model_b, m.kind, m.correlation DESC")

# The compare page (/-/compare?dataset=&a=&b=); publish.INDEXES serves each lookup (unit_matches by
# (dataset, model_a, model_b, kind), layer_cka by (model_a, dataset, model_b) and (model_b, dataset, model_a)).
# layer_cka holds one direction of a pair (A × B; symmetric): B × A reads it transposed. Portable SQL.
COMPARED_PAIRS_SQL = ("SELECT DISTINCT model_a, dataset, model_b FROM layer_cka WHERE model_a <> model_b "
                      "ORDER BY dataset, model_a, model_b")
COMPARED_SQL = ("SELECT (SELECT COUNT(*) FROM layer_cka WHERE model_a = ? AND dataset = ? AND model_b = ?) + "
                "(SELECT COUNT(*) FROM layer_cka WHERE model_b = ? AND dataset = ? AND model_a = ?)")
# Per layer of A: B's layer of highest CKA and that CKA; units with a one-to-one partner above the
# threshold; live units; the mean r of each unit's most correlated unit of B.
COMPARE_LAYERS_SQL = """WITH both_ways AS (SELECT layer_a, layer_b, cka FROM layer_cka
                                WHERE model_a = ? AND dataset = ? AND model_b = ? UNION ALL
                                SELECT layer_b, layer_a, cka FROM layer_cka
                                WHERE model_b = ? AND dataset = ? AND model_a = ? AND model_a <> model_b),
     cka AS (SELECT layer_a, layer_b, cka, ROW_NUMBER() OVER (PARTITION BY layer_a
             ORDER BY cka IS NULL, cka DESC, layer_b) AS position FROM both_ways),
     pairs AS (SELECT layer_a, COUNT(DISTINCT CASE WHEN correlation > ? THEN unit_a END) AS above
               FROM unit_matches WHERE dataset = ? AND model_a = ? AND model_b = ? AND kind = 'one_to_one'
               GROUP BY layer_a),
     best AS (SELECT layer_a, AVG(correlation) AS mean_r FROM unit_matches
              WHERE dataset = ? AND model_a = ? AND model_b = ? AND kind = 'best' GROUP BY layer_a)
SELECT l.layer, cka.layer_b, cka.cka, COALESCE(pairs.above, 0), l.channels - COALESCE(l.n_dead, 0), best.mean_r
FROM layers l LEFT JOIN cka ON cka.layer_a = l.layer AND cka.position = 1
LEFT JOIN pairs ON pairs.layer_a = l.layer LEFT JOIN best ON best.layer_a = l.layer
WHERE l.model = ? AND l.dataset = ? ORDER BY l.layer_index, l.layer"""


def compare_layers_args(a: str, b: str, dataset: str) -> list:
    """COMPARE_LAYERS_SQL's parameters."""
    return [a, dataset, b, a, dataset, b, MATCH_THRESHOLD, dataset, a, b, dataset, a, b, a, dataset]


TOP_PAIRS = 24
COMPARE_PAIRS_SQL = ("SELECT layer_a, unit_a, layer_b, unit_b, correlation FROM unit_matches "
                     "WHERE dataset = ? AND model_a = ? AND model_b = ? AND kind = 'one_to_one' "
                     "ORDER BY correlation DESC, layer_a, unit_a LIMIT ?")


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


KEY = ("model", "dataset", "layer", "unit")
THUMB = 48  # px: pictures in table rows
# The catalogue's question: neurons both class- and colour-selective, and surely so (docs/science.md §22):
# γ beats the class-prior null and α's 95 % interval lies above the threshold. A run ingested without
# that significance (--gamma-null-draws 0, --bootstrap 0: NULLs) asks with γ and α alone.
MISSION = {"gamma": 0.9, "gamma_p": 0.01, "alpha_lo": 0.5}
MISSION_FALLBACK = {"alpha": MISSION["alpha_lo"]}  # asked instead where a run has no alpha_lo
MISSION_OPS = {"gamma": ">", "gamma_p": "<", "alpha_lo": ">", "alpha": ">"}


def mission(has_gamma_p: bool, has_alpha_lo: bool) -> dict:
    """The mission's thresholds for a run: column -> value, in the canned query's parameter order."""
    out = {"gamma": MISSION["gamma"]}
    if has_gamma_p:
        out["gamma_p"] = MISSION["gamma_p"]
    if has_alpha_lo:
        out["alpha_lo"] = MISSION["alpha_lo"]
    else:
        out["alpha"] = MISSION_FALLBACK["alpha"]
    return out


def mission_dropped(thresholds: dict) -> list[dict]:
    """What ``mission()`` left out of a run's thresholds, for the front page's note: per missing column, the
    ingest option that leaves it NULL, what the run lacks, the condition dropped and its stand-in (or None)."""
    dropped = []
    if "gamma_p" not in thresholds:
        dropped.append({"flag": "--gamma-null-draws 0", "lacks": "γ's p-values",
                        "was": f"gamma_p < {MISSION['gamma_p']}", "now": None})
    if "alpha_lo" not in thresholds:
        dropped.append({"flag": "--bootstrap 0", "lacks": "α's intervals", "was": f"alpha_lo > {MISSION['alpha_lo']}",
                        "now": f"alpha > {thresholds['alpha']}"})
    return dropped


def mission_condition(thresholds: dict) -> str:
    """``gamma > 0.9 AND gamma_p < 0.01 AND alpha_lo > 0.5`` for those thresholds."""
    return " AND ".join(f"{c} {MISSION_OPS[c]} {v}" for c, v in thresholds.items())


def _neuron_href(model, dataset, layer, unit, page="/-/neuron") -> str:
    return page + "?" + urlencode({"model": model, "dataset": dataset, "layer": layer, "unit": unit})


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
    # its partners in other models on this data set (`neurocat compare --activations`), with their NFs
    partners = await _rows(datasette, PARTNERS_SQL, [key[1], key[0], key[2], key[3]])
    similar = await _rows(datasette, "SELECT s.unit_b, s.pearson, s.euclidean FROM similarity_pairs s "
                                     "WHERE s.model = ? AND s.dataset = ? AND s.layer = ? AND s.unit_a = ? "
                                     "ORDER BY s.rank", list(key))
    classes = await _rows(datasette, plots.CLASS_FREQUENCIES_SQL, list(key))
    pictures = await _rows(datasette, "SELECT kind, rank, image_id, value FROM visualizations WHERE model = ? "
                                      "AND dataset = ? AND layer = ? AND unit = ? ORDER BY kind, rank", list(key))
    tuning = await _rows(datasette, plots.ORIENTATION_TUNING_SQL, list(key))
    mirrors = await _rows(datasette, plots.SYMMETRY_AXES_SQL, list(key))
    query = urlencode(dict(zip(("model", "dataset", "layer", "unit"), map(str, key))))
    link = lambda unit: "/-/neuron?" + urlencode({"model": key[0], "dataset": key[1], "layer": key[2], "unit": unit})  # noqa: E731
    return Response.html(await datasette.render_template("neuron.html", {
        "neuron": neuron, "query": query, "similar": [(u, p, e, link(u)) for u, p, e in similar],
        "classes": classes, "key": key, "tuning": tuning, "tuning_images": tuning[0][2] if tuning else None,
        "mirrors": [{"axis": axis, "retention": r, "n_images": n} for axis, r, n in mirrors],
        "mirror_scale": max([1.0] + [r for _, r, _ in mirrors]), "fmt": format_float,
        "optimised": [(kind, value) for kind, _, _, value in pictures if kind != "gradcam"],
        "gradcams": [(rank, image_id, value) for kind, rank, image_id, value in pictures if kind == "gradcam"],
        "partners": [(m, layer, unit, r, kind, _neuron_href(m, key[1], layer, unit),
                      _neuron_href(m, key[1], layer, unit, "/-/neuron/nf.png")) for m, layer, unit, r, kind in partners]},
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


async def orientation_png(datasette, request):
    """The neuron's orientation tuning curve as a polar plot; 404 when it has none (opt-in analysis)."""
    key = _neuron_key(request)
    rows = await _rows(datasette, plots.ORIENTATION_TUNING_SQL, list(key or ("", "", "", -1)))
    return _png(await asyncio.to_thread(plots.orientation_tuning_chart, rows) if rows else None)


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
    others = [r[0] for r in await _rows(datasette, plots.CKA_OTHERS_SQL, plots.cka_others_args(*(chosen or ("", ""))))]
    return Response.html(await datasette.render_template("model.html", {
        "runs": runs, "chosen": chosen, "layers": layers, "figures": list(plots.FIGURES), "cka_others": others,
        "captions": plots.FIGURE_CAPTIONS,
        "encode": lambda **kw: urlencode(kw), "database": _db(datasette).name}, request=request))


async def model_plot(datasette, request):
    name, model, dataset = (request.args.get(k) for k in ("figure", "model", "dataset"))
    if name not in plots.FIGURES or not model or not dataset:
        return _png(None)
    sql, draw = plots.FIGURES[name]
    rows = await _rows(datasette, sql, [model, dataset])
    return _png(await asyncio.to_thread(draw, rows))


async def cka_png(datasette, request):
    """The layer CKA heatmap of two models on one data set (?model, other, dataset)."""
    model, other, dataset = (request.args.get(k) for k in ("model", "other", "dataset"))
    rows = await _rows(datasette, plots.CKA_SQL, plots.cka_args(model, other, dataset)) if model and other and dataset else []
    return _png(await asyncio.to_thread(plots.cka_heatmap, rows, model, other) if rows else None)


async def compare_page(datasette, request):
    """Two models on one data set (?dataset, a, b): the layer CKA heatmap, per layer of A its closest layer of B
    and how many units have a one-to-one partner, and the strongest one-to-one pairs with both NFs. 404 with
    one line (and the compared pairs) for unknown models or a pair never compared."""
    dataset, a, b = (request.args.get(k) for k in ("dataset", "a", "b"))
    compared = await _rows(datasette, COMPARED_SQL, [a, dataset, b, a, dataset, b]) if dataset and a and b and a != b else [(0,)]
    context = {"dataset": dataset, "a": a, "b": b, "encode": lambda **kw: urlencode(kw), "fmt": format_float,
               "threshold": MATCH_THRESHOLD}
    if not compared[0][0]:
        pairs = await _rows(datasette, COMPARED_PAIRS_SQL, [])
        context["message"] = (f"no layer CKA of {a or '?'} against {b or '?'} on {dataset or '?'}: "
                              f"run `neurocat compare {a or 'A'} {b or 'B'} --activations` first")
        context["pairs"] = [(ma, ds, mb, "/-/compare?" + urlencode({"dataset": ds, "a": ma, "b": mb}))
                            for ma, ds, mb in pairs]
        return Response.html(await datasette.render_template("compare.html", context, request=request), status=404)
    layers = await _rows(datasette, COMPARE_LAYERS_SQL, compare_layers_args(a, b, dataset))
    top = await _rows(datasette, COMPARE_PAIRS_SQL, [dataset, a, b, TOP_PAIRS])
    context.update({
        "layers": layers, "n_above": sum(r[3] for r in layers), "n_live": sum(r[4] or 0 for r in layers),
        "heatmap": "/-/model/cka.png?" + urlencode({"model": a, "other": b, "dataset": dataset}),
        "swapped": "/-/compare?" + urlencode({"dataset": dataset, "a": b, "b": a}),
        "model_href": {m: "/-/model?" + urlencode({"model": m, "dataset": dataset}) for m in (a, b)},
        "top": [{"layer_a": la, "unit_a": ua, "layer_b": lb, "unit_b": ub, "r": r,
                 "href_a": _neuron_href(a, dataset, la, ua), "nf_a": _neuron_href(a, dataset, la, ua, "/-/neuron/nf.png"),
                 "href_b": _neuron_href(b, dataset, lb, ub), "nf_b": _neuron_href(b, dataset, lb, ub, "/-/neuron/nf.png")}
                for la, ua, lb, ub, r in top]})
    return Response.html(await datasette.render_template("compare.html", context, request=request))


async def crop_png(datasette, request):
    """One top image's receptive-field crop (?model, dataset, layer, unit, rank), ``size`` px (default 48)."""
    key = _neuron_key(request)
    try:
        rank, size = int(request.args["rank"]), min(max(int(request.args.get("size", THUMB)), 8), 512)
    except (KeyError, ValueError):
        return _png(None)
    rows = await _rows(datasette, "SELECT d.root, m.image_size, i.path, t.crop_top, t.crop_left, t.crop_size "
                                  "FROM top_images t JOIN images i ON i.dataset = t.dataset AND i.image_id = t.image_id "
                                  "JOIN models m ON m.model = t.model AND m.dataset = t.dataset "
                                  "JOIN datasets d ON d.dataset = t.dataset WHERE t.model = ? AND t.dataset = ? "
                                  "AND t.layer = ? AND t.unit = ? AND t.rank = ?", list(key or ("", "", "", -1)) + [rank])
    if not rows:
        return _png(None)
    return _png(await asyncio.to_thread(plots.crop_png, *rows[0], cell=size))


async def landing_page(datasette, request):
    """The front page: models × data sets with neuron counts, the mission query ready to run for each run,
    and each run's most colour- and class-selective neurons."""
    db = _db(datasette)
    runs = [dict(zip(("model", "dataset", "architecture", "n_images", "n_neurons", "color_threshold"), r))
            for r in await _rows(datasette, "SELECT model, dataset, architecture, n_images, n_neurons, color_threshold "
                                            "FROM models ORDER BY model, dataset", [])]
    for run in runs:
        key = [run["model"], run["dataset"]]
        run["model_href"] = "/-/model?" + urlencode({"model": run["model"], "dataset": run["dataset"]})
        run["neurons_href"] = f"/{db.name}/neurons?" + urlencode({"model": run["model"], "dataset": run["dataset"]})
        run["layers"] = await _rows(datasette, "SELECT layer, channels FROM layers WHERE model = ? AND dataset = ? "
                                               "ORDER BY layer_index, layer", key)
        has_p, has_lo = (await _rows(datasette, "SELECT COUNT(gamma_p), COUNT(alpha_lo) FROM neurons "
                                                "WHERE model = ? AND dataset = ?", key))[0]
        thresholds = mission(bool(has_p), bool(has_lo))
        run["mission"] = thresholds
        run["mission_condition"] = mission_condition(thresholds)
        run["mission_sure"] = bool(has_p and has_lo)
        run["mission_dropped"] = mission_dropped(thresholds)
        run["mission_sql"] = (f"SELECT model, dataset, layer, unit FROM neurons WHERE model = '{_sql_text(run['model'])}' "
                              f"AND dataset = '{_sql_text(run['dataset'])}' AND {run['mission_condition']}")
        hits = dict(await _rows(datasette, "SELECT layer, COUNT(*) FROM neurons WHERE model = ? AND dataset = ? AND "
                                           + " AND ".join(f"{c} {MISSION_OPS[c]} ?" for c in thresholds)
                                           + " GROUP BY layer", key + list(thresholds.values())))
        run["hits"] = hits
        run["n_hits"] = sum(hits.values())
        # ready to run on the layer with the most answers (the first layer when none has any)
        run["mission_layer"] = max((layer for layer, _ in run["layers"]), key=lambda layer: hits.get(layer, 0),
                                   default=None)
        top = {}
        for index in ("alpha", "gamma"):
            rows = await _rows(datasette, f"SELECT layer, unit, alpha, gamma, color_name, hue FROM neurons "
                                          f"WHERE model = ? AND dataset = ? AND {index} IS NOT NULL "
                                          f"ORDER BY {index} DESC, layer, unit LIMIT 6", key)
            top[index] = [dict(zip(("layer", "unit", "alpha", "gamma", "color_name", "hue"), r),
                               href=_neuron_href(*key, r[0], r[1]), nf=_neuron_href(*key, r[0], r[1], "/-/neuron/nf.png"))
                          for r in rows]
        run["top"] = top
        run["top_href"] = {index: f"/{db.name}/neurons?" + urlencode({"model": run["model"], "dataset": run["dataset"],
                                                                      "_sort_desc": index}) for index in top}
    models = sorted({r["model"] for r in runs})
    datasets = sorted({r["dataset"] for r in runs})
    grid = {(r["model"], r["dataset"]): r for r in runs}
    compared = [(ma, ds, mb, "/-/compare?" + urlencode({"dataset": ds, "a": ma, "b": mb}))
                for ma, ds, mb in await _rows(datasette, COMPARED_PAIRS_SQL, [])]
    return Response.html(await datasette.render_template("landing.html", {
        "compared": compared,
        "runs": runs, "models": models, "datasets": datasets, "grid": grid, "database": db.name,
        "mission": MISSION, "canned_sql": CANNED["selective_neurons"]["sql"], "fmt": format_float},
        request=request))


@hookimpl
def register_routes():
    return [
        (r"^/$", landing_page),
        (r"^/-/neuron/crop\.png$", crop_png),
        (r"^/-/neuron$", neuron_page),
        (r"^/-/neuron/nf\.png$", nf_png),
        (r"^/-/neuron/sheet\.png$", sheet_png),
        (r"^/-/neuron/visualization\.png$", visualization_png),
        (r"^/-/neuron/classes\.png$", classes_png),
        (r"^/-/neuron/orientation\.png$", orientation_png),
        (r"^/-/model$", model_page),
        (r"^/-/model/plot\.png$", model_plot),
        (r"^/-/model/cka\.png$", cka_png),
        (r"^/-/compare$", compare_page),
    ]


def _sql_text(value: str) -> str:
    return str(value).replace("'", "''")


def format_float(value: float) -> str:
    """3 significant digits, without an exponent between 1e-4 and 1e6: 0.549, 12.3, 1230, 0.00123."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    rounded = float(f"{value:.3g}")
    if not 1e-4 <= abs(rounded) < 1e6:
        return f"{rounded:.3g}"
    decimals = max(0, 2 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{decimals}f}"


# Tables and views whose nf_png is the NF of the row's (model, dataset, layer, unit): their thumbnails
# are fetched (and cached) from /-/neuron/nf.png; elsewhere (a user's SQL) the picture is inlined.
NF_BY_KEY = ("neurons", "units", "color_selective_neurons")


def _thumbnail(src: str, alt: str) -> Markup:
    return Markup(f'<img class="thumb" src="{escape(src)}" width="{THUMB}" height="{THUMB}" alt="{escape(alt)}" '
                  f'style="image-rendering: pixelated; object-fit: contain">')


def _keys(row) -> list:
    return list(row.keys()) if hasattr(row, "keys") else []


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    """A neuron's unit number links to its page wherever a row names model, dataset and layer; PNGs show
    at 48 px; floats show 3 significant digits (the exact value in the tooltip; JSON and CSV keep it)."""
    if value is None:
        return None
    keys = _keys(row)
    if column in ("unit", "unit_a", "unit_b", "critical_unit"):
        if not all(k in keys for k in ("model", "dataset", "layer")):
            return None
        return Markup(f'<a href="{escape(_neuron_href(row["model"], row["dataset"], row["layer"], value))}">'
                      f'{escape(value)}</a>')
    if column == "layer" and table == "layer_summary" and all(k in keys for k in ("model", "dataset")):
        href = f"/{database}/neurons?" + urlencode({"model": row["model"], "dataset": row["dataset"], "layer": value})
        return Markup(f'<a href="{escape(href)}">{escape(value)}</a>')
    if isinstance(value, bytes) and value.startswith(b"\x89PNG\r\n\x1a\n"):
        if column == "nf_png" and table in NF_BY_KEY and all(k in keys for k in KEY):
            return _thumbnail(_neuron_href(*(row[k] for k in KEY), page="/-/neuron/nf.png"), "Neuron Feature")
        return _thumbnail("data:image/png;base64," + base64.b64encode(value).decode(), column)
    if isinstance(value, float):
        return Markup(f'<span class="float" title="{value!r}">{format_float(value)}</span>')
    return None


# Pictures a table page adds beside its columns (HTML only): name -> the row's cells -> an <img> or None.
def _crop_cell(raw):
    if all(raw.get(k) is not None for k in KEY + ("rank",)):
        return _thumbnail("/-/neuron/crop.png?" + urlencode({**{k: raw[k] for k in KEY}, "rank": raw["rank"]}),
                          "top image crop")
    return None


def _nf_cell(unit_column):
    def cell(raw):
        if all(raw.get(k) is not None for k in ("model", "dataset", "layer", unit_column)):
            return _thumbnail(_neuron_href(raw["model"], raw["dataset"], raw["layer"], raw[unit_column],
                                           page="/-/neuron/nf.png"), f"Neuron Feature of {unit_column}")
        return None
    return cell


PICTURES = {"crop": _crop_cell, "nf_a": _nf_cell("unit_a"), "nf_b": _nf_cell("unit_b")}


def arrange(config: dict | None, columns: list[dict], rows) -> tuple[list[dict], list[list[dict]]]:
    """A table page's columns and rows as ``config`` (``columns``: order, ``hidden``) says: listed columns
    first, in that order, pictures of PICTURES added where listed, the rest after, hidden ones left out."""
    if not config:
        return columns, [list(row) for row in rows]
    hidden = set(config.get("hidden", ()))
    by_name = {c["name"]: c for c in columns if c["name"] not in hidden}
    order = [n for n in config.get("columns", ()) if n in by_name or n in PICTURES]
    order += [n for n in by_name if n not in order]
    descriptions = config.get("descriptions", {})
    out_columns = [by_name.get(n) or {"name": n, "sortable": False, "is_pk": False, "type": "", "notnull": 0,
                                      "description": descriptions.get(n)} for n in order]
    out_rows = []
    for row in rows:
        cells = {c["column"]: c for c in row}
        raw = {name: c["raw"] for name, c in cells.items()}
        out = []
        for n in order:
            if n in by_name:
                out.append(cells.get(n) or {"column": n, "value": "", "raw": None, "value_type": "none"})
            else:
                picture = PICTURES[n](raw)
                out.append({"column": n, "value": picture or Markup("&nbsp;"), "raw": None,
                            "value_type": "picture" if picture else "none"})
        out_rows.append(out)
    return out_columns, out_rows


@hookimpl
def extra_template_vars(template, database, table, view_name, datasette):
    """``neurocat_arrange(display_columns, display_rows)`` for _table.html: the table's display settings."""
    if view_name != "table" or not table:
        return {}
    config = datasette.plugin_config("neurocat", database=database, table=table)
    if config:
        described = (datasette.table_metadata(database, table) or {}).get("columns") or {}
        config = {**config, "descriptions": described}
    return {"neurocat_arrange": lambda columns, rows: arrange(config, columns, rows)}
