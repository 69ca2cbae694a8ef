"""`neurocat analyze`: run an analysis on a catalogue that already holds a model's ingest.

Each function reads the rows it needs through the catalogue's read API (catalog/reading.py),
computes with the same code as `ingest`, and replaces its own tables' rows for (model, dataset)
in one transaction.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from catalog import Catalog
from catalog.reading import CatalogLookupError

from . import analysis_tables
from .data import LabelledImages
from .errors import UsageError
from .models import LoadedModel, model_of  # noqa: F401 - model_of: callers load the run's network from here
from .network import Network, default_device, image_batches, network_pass
from .record import as_maps
from .ica import neuron_components
from .neuron_feature import CropPlan, gather_crops
from .receptive_field import ReceptiveField


def _counts(tables: dict) -> dict[str, int]:
    """What an analysis reports: rows written per table."""
    return {t: rows.num_rows for t, rows in tables.items()}


def _tuples(table: pa.Table, *columns: str) -> list[tuple]:
    """Rows of some columns of an Arrow table, as tuples."""
    return list(zip(*(table.column(c).to_pylist() for c in columns)))


def run_info(cat: Catalog, model: str, dataset: str | None) -> dict:
    """The models row of (model, dataset); the data set may be omitted when the model has one."""
    try:
        return cat.run(model, dataset)
    except CatalogLookupError as exc:
        raise UsageError(str(exc)) from None


def _cofs(cat: Catalog, model: str, dataset: str):
    freq = cat.class_frequencies(model, dataset)
    units = cat.neurons(model, dataset, columns=["layer", "unit", "dead"])
    return analysis_tables.cof_matrices(freq, units, cat.classes(dataset))


def analyze_faceted(cat: Catalog, model: str, dataset: str | None = None) -> dict[str, int]:
    info = run_info(cat, model, dataset)
    tables = analysis_tables.faceted(model, info["dataset"], _cofs(cat, model, info["dataset"]))
    cat.replace(tables, model, info["dataset"])
    return _counts(tables)


def analyze_similarity(cat: Catalog, model: str, dataset: str | None = None, k: int | None = 10) -> dict[str, int]:
    info = run_info(cat, model, dataset)
    tables = analysis_tables.similarity(model, info["dataset"], _cofs(cat, model, info["dataset"]), k)
    cat.replace(tables, model, info["dataset"])
    return _counts(tables)


def analyze_hierarchy(cat: Catalog, model: str, dataset: str | None = None) -> dict[str, int]:
    """Rebuild distances, tree and MST from the stored class vectors (no network pass)."""
    info = run_info(cat, model, dataset)
    rows = [tuple(r.values()) for r in cat.class_vectors(model, info["dataset"]).to_pylist()]
    if not rows:
        raise UsageError(f"no class vectors for {model!r}: re-run `neurocat ingest` to compute them in the pass")
    vectors = np.stack([analysis_tables.blob_vector(r[3]) for r in rows])
    tables = analysis_tables.hierarchy(model, info["dataset"], rows[0][0], [r[1] for r in rows], vectors,
                                np.array([r[2] for r in rows]))
    cat.replace(tables, model, info["dataset"])
    return _counts(tables)


def images_of(cat: Catalog, dataset: str) -> LabelledImages:
    """The data set as ingest reads it (index = image id), from the catalogue's rows."""
    root = cat.dataset_info(dataset)["root"]
    rows = cat.images(dataset)
    return LabelledImages(dataset, Path(root), rows.column("path").to_pylist(), rows.column("label").to_pylist())


def pooled_vectors(model: LoadedModel, layer: str, images: LabelledImages, ids: list[int], image_size: int,
                   batch_size: int = 64, device: str | None = None, progress: bool = True) -> tuple[list[int], np.ndarray]:
    """Global-average-pooled output of ``layer`` for each readable image of ``ids``."""
    network = Network(model, device)
    kept, vectors = [], []

    def pool(batch, _layer, out):
        vectors.append(as_maps(out, layer).float().mean(dim=(2, 3)))
        kept.extend(batch.ids_cpu.tolist())

    batches = image_batches(images, ids, network.device, image_size, batch_size, 0)
    for _ in network_pass(network, batches, [layer], pool, desc="vectors", total=len(ids), progress=progress):
        pass
    return kept, torch.cat(vectors).double().cpu().numpy()


def analyze_filter_tree(cat: Catalog, model: str, label: str, dataset: str | None = None, layer: str | None = None,
                        network: LoadedModel | None = None, batch_size: int = 64, device: str | None = None,
                        progress: bool = True) -> dict[str, int]:
    """Algorithm 2 for one class, over its images' pooled vectors of ``layer`` (default the hierarchy layer).

    The network is re-run on that class's images only; ``network`` overrides the one the models row names.
    """
    info = run_info(cat, model, dataset)
    ds = info["dataset"]
    layer = layer or info["hierarchy_layer"]
    ids = cat.images(ds, label=label).column("image_id").to_pylist()
    if not ids:
        raise UsageError(f"no images of class {label!r} in {ds!r}; classes: {', '.join(cat.classes(ds)[:20])}")
    network = network or model_of(info)
    kept, vectors = pooled_vectors(network, layer, images_of(cat, ds), ids, info["image_size"], batch_size,
                                   device, progress)
    tables = analysis_tables.filter_tree_tables(model, ds, label, layer, kept, vectors)
    cat.replace(tables, model, ds, label=label)  # other classes' trees stay
    return _counts(tables)


def analyze_ica(cat: Catalog, model: str, dataset: str | None = None, layers: list[str] | None = None,
                size: int = 32, components: int = 8, device: str | None = None, batch_size: int = 64,
                memory: int = 512 << 20, progress: bool = True) -> dict[str, int]:
    """FastICA components of each live neuron's top-100 crops (gray and per RGB channel), as PNGs.

    Crops are rebuilt from the stored boxes at ``size`` px; neurons are processed in chunks whose
    crops fit in ``memory`` bytes, so a layer of any width stays within it.
    """
    info = run_info(cat, model, dataset)
    ds = info["dataset"]
    images = images_of(cat, ds)
    mean = cat.dataset_info(ds)
    device = default_device(device)
    fill = torch.tensor([mean["mean_r"], mean["mean_g"], mean["mean_b"]], dtype=torch.float32, device=device)
    known = cat.layer_names(model, ds)
    unknown = sorted(set(layers or []) - set(known))
    if unknown:
        raise UsageError(f"layers {unknown} were not ingested for {model!r}; ingested: {', '.join(known)}")
    written = 0
    for layer in layers or known:
        rows = _tuples(cat.top_images(model, ds, layer, top=100, live=True),
                       "unit", "rank", "image_id", "crop_top", "crop_left", "crop_size")
        if not rows:
            continue
        rf_size = rows[0][5]
        s = min(size, rf_size)
        n_top = max(r[1] for r in rows) + 1
        units = sorted({r[0] for r in rows})
        per_chunk = max(1, memory // (n_top * 3 * s * s * 4))
        table = {c: [] for c in ("model", "dataset", "layer", "unit", "mode", "component", "png")}
        for start in tqdm(range(0, len(units), per_chunk), desc=f"ica {layer}", unit="chunk", disable=not progress):
            chunk = units[start:start + per_chunk]
            local = {u: i for i, u in enumerate(chunk)}
            sel = sorted((r for r in rows if r[0] in local), key=lambda r: (r[2], r[0], r[1]))
            plan = CropPlan(layer, ReceptiveField(rf_size, 1, 0, 0), s, len(chunk),
                            torch.tensor([local[r[0]] for r in sel]), torch.tensor([r[2] for r in sel]),  # host: plan
                            torch.tensor([r[3] for r in sel]), torch.tensor([r[4] for r in sel]),  # host: plan
                            torch.ones(len(sel)))  # host: plan
            ranks = torch.tensor([r[1] for r in sel])  # host: plan ranks
            crops = torch.zeros(len(chunk), n_top, 3, s, s, device=device)
            counts = torch.zeros(len(chunk), dtype=torch.int64)  # host: plan
            for batch in image_batches(images, sorted(set(plan.image_ids.tolist())), device, info["image_size"],
                                       batch_size, 0):
                if batch.pixels is None:
                    continue
                for idx, got in gather_crops(plan, batch.images01, batch.ids_cpu, fill):
                    crops[plan.units[idx], ranks[idx]] = got
                    counts.index_add_(0, plan.units[idx], torch.ones(len(idx), dtype=torch.int64))  # host: plan
            found = neuron_components(crops, counts, components)
            for mode, per_neuron in found.items():
                for i, comps in enumerate(per_neuron):
                    for c, image in enumerate(comps.numpy()):
                        for key, value in (("model", model), ("dataset", ds), ("layer", layer), ("unit", chunk[i]),
                                           ("mode", mode), ("component", c), ("png", analysis_tables.png_bytes(image))):
                            table[key].append(value)
        cat.replace({"ica_components": pa.table(table)}, model, ds, layer=layer)
        written += len(table["png"])
    return {"ica_components": written}


def analyze_index(cat: Catalog, model: str, name: str, dataset: str | None = None) -> dict[str, int]:
    """Compute one registered index plugin for every ingested layer, from the stored NFs and top images."""
    import io

    from PIL import Image

    from . import indexes

    functions = indexes.registered()
    if name not in functions:
        raise UsageError(f"no index plugin named {name!r}; installed: {', '.join(sorted(functions)) or 'none'} "
                         f"(entry-point group {indexes.GROUP!r})")
    info = run_info(cat, model, dataset)
    ds = info["dataset"]
    classes = cat.classes(ds)
    class_index = {c: i for i, c in enumerate(classes)}
    table = {c: [] for c in ("model", "dataset", "layer", "unit", "index", "value")}
    for layer in cat.layer_names(model, ds):
        units = _tuples(cat.neurons(model, ds, layer, columns=["unit", "nf_png", "a_max"]), "unit", "nf_png", "a_max")
        tops = _tuples(cat.top_images(model, ds, layer), "unit", "rank", "rel_activation", "label")
        c, n = len(units), max((r[1] for r in tops), default=0) + 1
        size = next((Image.open(io.BytesIO(u[1])).size[0] for u in units if u[1] is not None), 1)
        nf = np.zeros((c, size, size, 3))
        for u, png, _ in units:
            if png is not None:
                nf[u] = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64) / 255
        rel, labels = np.full((c, n), np.nan), np.full((c, n), -1, dtype=np.int64)
        for u, rank, value, label in tops:
            rel[u, rank] = np.nan if value is None else value
            labels[u, rank] = class_index[label]
        data = indexes.LayerData(model, layer, nf, np.array([u[1] is not None for u in units]),
                                 np.array([np.nan if u[2] is None else u[2] for u in units]), rel, labels, classes)
        try:
            values = indexes.compute({name: functions[name]}, data)[name]
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        for key, value in (("model", [model] * c), ("dataset", [ds] * c), ("layer", [layer] * c),
                           ("unit", list(range(c))), ("index", [name] * c),
                           ("value", [None if np.isnan(v) else float(v) for v in values])):
            table[key] += value
    cat.replace({"neuron_indexes": pa.table(table)}, model, ds)
    return {"neuron_indexes": len(table["unit"])}


def analyze_label_hierarchy(cat: Catalog, dataset: str, file: str | None = None) -> dict[str, int]:
    """Replace a data set's class hierarchy: from a CSV child,parent[,name], or WordNet for ImageNet ids."""
    from .labels import hierarchy_rows, read_parents

    try:
        cat.dataset_info(dataset)
    except CatalogLookupError as exc:
        raise UsageError(str(exc)) from None
    parents, names = read_parents(file) if file else (None, None)
    rows = hierarchy_rows(cat.classes(dataset), parents, names)
    table = pa.table({"dataset": [dataset] * len(rows),
                      **{k: [r[i] for r in rows] for i, k in enumerate(("label", "ancestor", "depth", "name"))}})
    cat.replace({"label_hierarchy": table}, "", dataset)
    return {"label_hierarchy": len(rows)}
