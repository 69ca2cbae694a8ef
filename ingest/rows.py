"""Rows: a run's results as Arrow tables named like the catalogue's tables. Pure functions of what
the scan and the passes over the top images found; no network runs here."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import __version__, analysis_tables, indexes
from .analysis_tables import png_bytes
from .data import LabelledImages
from .labels import hierarchy_rows
from .receptive_field import ReceptiveField
from .selectivity import class_selectivity, color_name, color_selectivity, curve_area
from .significance import alpha_interval, gamma_interval, gamma_null
from .top_images import LayerFeatures


# Layers whose rows are built at once. Two, as measured: each also runs PyTorch's own threads, so more
# would oversubscribe the cores of a large machine.
LAYER_THREADS = 2


@dataclass
class LayerResult:
    """One layer after the scan and the passes, on the host."""

    name: str
    index: int              # position among the chosen layers
    module_type: str
    out_height: int
    out_width: int
    rf: ReceptiveField
    values: np.ndarray      # (C, N) activations of the top images, rank order; -inf in empty slots
    image_ids: np.ndarray   # (C, N) -1 in empty slots
    positions: np.ndarray   # (C, N) flat position of the maximum in the layer's map
    features: LayerFeatures


def png_column(images: np.ndarray, keep: np.ndarray) -> list[bytes | None]:
    """PNG bytes of each (h, w, 3) uint8 image where ``keep``, else None; encoded in threads (zlib releases
    the GIL while it compresses), as many as the cores over the layers built at the same time."""
    with ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) // LAYER_THREADS)) as pool:
        encoded = iter(pool.map(png_bytes, (images[u] for u in np.flatnonzero(keep))))
        return [next(encoded) if k else None for k in keep]


def _repeat(value: str, n: int) -> pa.Array:
    """One string n times as a plain string column, built in Arrow rather than from a list of n objects."""
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int64)))


def _key(model: str, dataset: str, layer: str, n: int) -> dict[str, pa.Array]:
    return {"model": _repeat(model, n), "dataset": _repeat(dataset, n), "layer": _repeat(layer, n)}


def _per_unit_indexes(model: str, dataset: str, layer: str, values: dict[str, np.ndarray]) -> pa.Table:
    c = len(next(iter(values.values())))
    names = list(values)
    return pa.table({**_key(model, dataset, layer, c * len(names)), "unit": np.tile(np.arange(c), len(names)),
                     "index": pa.array(names, pa.string()).take(pa.array(np.repeat(np.arange(len(names)), c))),
                     "value": np.concatenate([np.asarray(values[n], dtype=np.float64) for n in names])})


def layer_tables(model: str, dataset: str, r: LayerResult, label_ids: np.ndarray, classes: list[str],
                 label_sets: dict[str, tuple[list[str], np.ndarray]], plugins: dict, options) -> dict[str, pa.Table]:
    """Every table's rows for one layer."""
    f = r.features
    values, ids = r.values.astype(np.float64), r.image_ids
    c, _ = values.shape
    units = np.arange(c)
    valid = ids >= 0
    a_max = values[:, 0]
    alive = a_max > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(valid & alive[:, None], np.maximum(values, 0) / a_max[:, None], np.nan)
    labels = np.where(valid, label_ids[np.clip(ids, 0, None)], -1)
    gamma = class_selectivity(rel, labels, len(classes), options.gamma_th)
    color = color_selectivity(f.nf.cpu(), f.sigma.cpu(), None if f.seen is None else f.seen.cpu())
    n_used = f.n_used.cpu().numpy()
    has_nf = alive & (n_used > 0)
    alpha = np.where(has_nf, color.alpha, np.nan)
    nf_u8 = (f.nf.cpu().permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    named = has_nf & (alpha >= options.color_threshold)
    out = {}

    out["layers"] = pa.table({
        **_key(model, dataset, r.name, 1), "layer_index": [r.index], "module_type": [r.module_type], "channels": [c],
        "out_height": [r.out_height], "out_width": [r.out_width], "rf_size": [r.rf.size], "rf_stride": [r.rf.stride],
        "rf_offset": [r.rf.offset_y], "nf_size": [f.nf_size], "n_dead": [int((~alive).sum())]})
    out["units"] = pa.table({
        **_key(model, dataset, r.name, c), "unit": units, "a_max": np.where(valid[:, 0], a_max, np.nan),
        "n_top": valid.sum(1), "dead": ~alive,
        "nf_png": png_column(nf_u8, has_nf),
        "nf_n_used": n_used, "hue": np.where(has_nf, color.hue, np.nan),
        "color_name": [color_name(color.chromatic_rgb[u]) if named[u] else None for u in range(c)],
        "alpha_method": np.where(has_nf, np.where(color.centred, "centred", "uncentred"), None).tolist(),
        "gamma_m": pa.array(np.where(gamma.m > 0, gamma.m, 0).astype(np.int64), pa.int64(), mask=~(gamma.m > 0))})
    per_unit = {"alpha": alpha, "gamma": gamma.gamma, "curve_area": np.where(alive, curve_area(rel), np.nan),
                "nf_self_activation": f.self_activation if f.self_activation is not None else np.full(c, np.nan),
                "color_drop": np.where(has_nf, f.color_drop.cpu().double().numpy(), np.nan)}
    layer_data = indexes.LayerData(model, r.name, nf_u8.astype(np.float64) / 255, has_nf,
                                   np.where(valid[:, 0], a_max, np.nan), rel, labels, classes)
    per_unit.update(indexes.compute(plugins, layer_data, strict=False))
    per_unit.update(_significance(r, rel, labels, label_ids, gamma.gamma, alpha, has_nf, options))
    out["neuron_indexes"] = _per_unit_indexes(model, dataset, r.name, per_unit)

    uu, rr = np.nonzero(valid)
    pos = r.positions[uu, rr].astype(np.int64)
    ys, xs = pos // r.out_width, pos % r.out_width
    with np.errstate(invalid="ignore"):
        in_nf = alive[uu] & (rel[uu, rr] >= options.min_rel) & (rr < options.nf_ranks)
    out["top_images"] = pa.table({
        **_key(model, dataset, r.name, len(uu)), "unit": uu, "rank": rr, "image_id": ids[uu, rr],
        "activation": values[uu, rr], "rel_activation": rel[uu, rr], "y": ys, "x": xs,
        "crop_top": r.rf.offset_y + ys * r.rf.stride, "crop_left": r.rf.offset_x + xs * r.rf.stride,
        "crop_size": np.full(len(uu), r.rf.size), "in_nf": in_nf})

    cu, cl = np.nonzero(gamma.count)
    out["class_frequencies"] = pa.table({
        **_key(model, dataset, r.name, len(cu)), "unit": cu, "label": np.asarray(classes, dtype=object)[cl].tolist(),
        "count": gamma.count[cu, cl], "frequency": gamma.frequency[cu, cl]})
    selectivity, frequencies = [], []
    for label_set, (names, per_image) in label_sets.items():
        set_labels = np.where(valid, per_image[np.clip(ids, 0, None)], -1)
        sel = class_selectivity(rel, set_labels, len(names), options.gamma_th)
        top = sel.frequency.argmax(1)
        live = sel.m > 0
        draws = options.gamma_null_draws
        null = (gamma_null(rel, set_labels, per_image, draws, options.gamma_th, key=(r.name, "label", label_set))
                if draws else None)
        none = np.full(c, np.nan)
        selectivity.append(pa.table({
            **_key(model, dataset, r.name, c), "unit": units, "label_set": [label_set] * c, "gamma": sel.gamma,
            "m": pa.array(np.where(live, sel.m, 0).astype(np.int64), pa.int64(), mask=~live),
            "top_label": [names[t] if ok else None for t, ok in zip(top, live)],
            "top_frequency": np.where(live, sel.frequency[units, top], np.nan),
            "gamma_null_mean": none if null is None else null.mean, "gamma_p": none if null is None else null.p,
            "gamma_excess": none if null is None else null.excess}))
        lu, ll = np.nonzero(sel.count)
        frequencies.append(pa.table({
            **_key(model, dataset, r.name, len(lu)), "unit": lu, "label_set": [label_set] * len(lu),
            "label": [names[i] for i in ll], "count": sel.count[lu, ll], "frequency": sel.frequency[lu, ll]}))
    if label_sets:
        out["label_selectivity"] = pa.concat_tables(selectivity)
        out["label_frequencies"] = pa.concat_tables(frequencies)
    return out


def _significance(r: LayerResult, rel: np.ndarray, labels: np.ndarray, label_ids: np.ndarray, gamma: np.ndarray,
                  alpha: np.ndarray, has_nf: np.ndarray, options) -> dict[str, np.ndarray]:
    """γ's class-prior null and the bootstrap intervals of γ and α (docs/science.md §22), as index rows."""
    out = {}
    draws, resamples = options.gamma_null_draws, options.bootstrap
    if draws:
        null = gamma_null(rel, labels, label_ids, draws, options.gamma_th, key=(r.name, "class"))
        out.update(gamma_null_mean=null.mean, gamma_p=null.p, gamma_excess=null.excess)
    if resamples:
        out["gamma_lo"], out["gamma_hi"] = gamma_interval(rel, labels, gamma, resamples, options.gamma_th,
                                                          key=(r.name, "class"))
        f = r.features
        if f.samples is not None:
            lo, hi = alpha_interval(f.samples, f.sample_weights, f.n_used.cpu().numpy(), alpha, resamples,
                                    key=(r.name,), seen=f.seen)
            out["alpha_lo"], out["alpha_hi"] = np.where(has_nf, lo, np.nan), np.where(has_nf, hi, np.nan)
    return out


def label_sets_of(images: LabelledImages) -> dict[str, tuple[list[str], np.ndarray]]:
    """Extra label columns: (values, per-image value id, -1 where empty)."""
    out = {}
    for label_set, values in images.extra_labels.items():
        names = sorted({v for v in values if v})
        position = {v: i for i, v in enumerate(names)}
        out[label_set] = (names, np.array([position.get(v, -1) for v in values], dtype=np.int64))
    return out


def nan_to_null(table: pa.Table) -> pa.Table:
    """NaN means "undefined": store it as NULL."""
    columns = [pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col) if pa.types.is_floating(col.type) else col
               for col in table.columns]
    return pa.table(dict(zip(table.column_names, columns)))


def error_table(model: str, dataset: str, images: LabelledImages, errors: list[tuple[int, str]]) -> pa.Table:
    listing = images.problems
    n = len(listing) + len(errors)
    return pa.table({
        "model": [model] * n, "dataset": [dataset] * n,
        "image_id": [None] * len(listing) + [i for i, _ in errors],
        "path": [p for p, _ in listing] + [images.paths[i] for i, _ in errors],
        "stage": ["listing"] * len(listing) + ["decode"] * len(errors),
        "error": [m for _, m in listing] + [e for _, e in errors],
    }, schema=pa.schema([("model", pa.string()), ("dataset", pa.string()), ("image_id", pa.int64()),
                         ("path", pa.string()), ("stage", pa.string()), ("error", pa.string())]))


def model_table(model_name: str, model, dataset: str, options, hierarchy_layer: str, n_images: int, n_errors: int,
                n_neurons: int, device: str, seconds: float) -> pa.Table:
    return pa.table({
        "model": [model_name], "dataset": [dataset], "architecture": [model.architecture], "source": [model.source],
        "weights": [model.weights], "seed": pa.array([getattr(model, "seed", None)], pa.int64()), "image_size": [options.image_size], "top_n": [options.top_n],
        "min_rel": [options.min_rel], "gamma_th": [options.gamma_th], "color_threshold": [options.color_threshold],
        "hierarchy_layer": [hierarchy_layer], "n_images": [n_images], "n_errors": [n_errors],
        "n_neurons": [n_neurons], "device": [device], "seconds": [seconds],
        "ingested_at": [datetime.now(timezone.utc).replace(tzinfo=None)], "neurocat_version": [__version__]})


def dataset_tables(images: LabelledImages, mean_rgb: list[float]) -> dict[str, pa.Table]:
    n = len(images)
    extra_ids, extra_sets, extra_values = [], [], []
    for label_set, values in images.extra_labels.items():
        extra_ids += range(n)
        extra_sets += [label_set] * n
        extra_values += values
    hierarchy = hierarchy_rows(images.classes)
    return {
        "label_hierarchy": pa.table({"dataset": [images.name] * len(hierarchy),
                                     **dict(zip(("label", "ancestor", "depth", "name"), map(list, zip(*hierarchy))))}),
        "datasets": pa.table({"dataset": [images.name], "root": [str(images.root.resolve())], "n_images": [n],
                              "n_classes": [len(images.classes)], "fingerprint": [images.fingerprint()],
                              "mean_r": [mean_rgb[0]], "mean_g": [mean_rgb[1]], "mean_b": [mean_rgb[2]]}),
        "images": pa.table({"dataset": [images.name] * n, "image_id": list(range(n)), "path": images.paths,
                            "label": images.labels}),
        "image_labels": pa.table({"dataset": [images.name] * len(extra_ids), "image_id": extra_ids,
                                  "label_set": extra_sets, "label": extra_values},
                                 schema=pa.schema([("dataset", pa.string()), ("image_id", pa.int64()),
                                                   ("label_set", pa.string()), ("label", pa.string())])),
    }


def cheap_analyses(model: str, dataset: str, classes: list[str], tables: dict[str, pa.Table], hierarchy_layer: str,
                    class_mean, similarity_k: int | None) -> dict[str, pa.Table]:
    """The cheap analyses from the run's own rows and the scan's class means (docs/science.md §6, §8, §9)."""
    cofs = analysis_tables.cof_matrices(tables["class_frequencies"], tables["units"], classes)
    out = analysis_tables.similarity(model, dataset, cofs, similarity_k)
    faceted = analysis_tables.faceted(model, dataset, cofs)["neuron_indexes"]
    out["neuron_indexes"] = pa.concat_tables([tables["neuron_indexes"], faceted.cast(tables["neuron_indexes"].schema)])
    if class_mean is not None:
        out.update(analysis_tables.hierarchy(model, dataset, hierarchy_layer, classes, class_mean.result().cpu().numpy(),
                                      class_mean.counts.cpu().numpy()))
    return out


def run_tables(model_name: str, model, images: LabelledImages, layers: list[LayerResult], class_mean,
               hierarchy_layer: str, n_seen: int, errors: list[tuple[int, str]], mean_rgb: list[float], options,
               device: str, seconds: float) -> dict[str, pa.Table]:
    """Every table of one run."""
    ds, classes = images.name, images.classes
    class_index = {c: i for i, c in enumerate(classes)}
    label_ids = np.array([class_index[label] for label in images.labels], dtype=np.int64)
    label_sets, plugins = label_sets_of(images), indexes.registered()
    per_layer: dict[str, list[pa.Table]] = {}
    # Layers side by side: much of a layer's work is NumPy on one core, so another layer fills the rest.
    # Each layer's rows depend on its own inputs and seeds alone, so the tables are the same as in order.
    with ThreadPoolExecutor(max_workers=LAYER_THREADS) as pool:
        done = pool.map(lambda r: layer_tables(model_name, ds, r, label_ids, classes, label_sets, plugins, options),
                        layers)
        for result in done:
            for name, table in result.items():
                per_layer.setdefault(name, []).append(table)
    tables = {name: nan_to_null(pa.concat_tables(parts, promote_options="default")) for name, parts in per_layer.items()}
    n_neurons = tables["units"].num_rows
    tables["ingest_errors"] = error_table(model_name, ds, images, errors)
    tables["models"] = model_table(model_name, model, ds, options, hierarchy_layer, n_seen, len(errors), n_neurons,
                                   device, seconds)
    tables.update(dataset_tables(images, mean_rgb))
    tables.update(cheap_analyses(model_name, ds, classes, tables, hierarchy_layer, class_mean, options.similarity_k))
    return tables


def image_activation_rows(model: str, dataset: str, kept: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
                          ) -> pa.Table:
    """``image_activations``: per layer, unit and probe image, the spatial max and mean (float16 in the
    file; docs/science.md §23). ``kept``: layer -> (image ids, max, mean), each (images × units)."""
    def constant(value: str, n: int) -> pa.DictionaryArray:  # one string per column, not one per row
        return pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([value]))

    parts = []
    for layer, (ids, mx, mean) in kept.items():
        images, units = mx.shape
        n = images * units
        parts.append(pa.table({"model": constant(model, n), "dataset": constant(dataset, n),
                               "layer": constant(layer, n), "unit": np.repeat(np.arange(units, dtype=np.int32), images),
                               "image_id": np.tile(np.asarray(ids, dtype=np.int32), units),
                               "max": np.ascontiguousarray(mx.T, dtype=np.float16).ravel(),
                               "mean": np.ascontiguousarray(mean.T, dtype=np.float16).ravel()}))
    if not parts:
        return pa.table({"model": pa.array([], pa.dictionary(pa.int32(), pa.string())),
                         "dataset": pa.array([], pa.dictionary(pa.int32(), pa.string())),
                         "layer": pa.array([], pa.dictionary(pa.int32(), pa.string())),
                         "unit": pa.array([], pa.int32()), "image_id": pa.array([], pa.int32()),
                         "max": pa.array([], pa.float16()), "mean": pa.array([], pa.float16())})
    return pa.concat_tables(parts)
