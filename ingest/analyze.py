"""`neurocat analyze`: run an analysis on a catalogue that already holds a model's ingest.

Each function reads the rows it needs, computes with the same code as `ingest`, and replaces
its own tables' rows for (model, dataset) in one transaction.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from catalog import Catalog

from . import analyses
from .data import LabelledImages, loader
from .errors import UsageError
from .models import LoadedModel, load_model
from .taps import LayerTap


def run_info(cat: Catalog, model: str, dataset: str | None) -> dict:
    """The models row of (model, dataset); the data set may be omitted when the model has one."""
    rows = cat.con.execute("SELECT * FROM models WHERE model = ? AND (? IS NULL OR dataset = ?)",
                           [model, dataset, dataset]).fetchall()
    names = [d[0] for d in cat.con.description]
    if not rows:
        known = [f"{m} on {d}" for m, d in cat.con.execute("SELECT model, dataset FROM models ORDER BY 1, 2").fetchall()]
        raise UsageError(f"no ingest of model {model!r}{f' on {dataset!r}' if dataset else ''} in {cat.path}; "
                         f"the catalogue holds: {', '.join(known) or 'nothing yet'}")
    if len(rows) > 1:
        raise UsageError(f"model {model!r} was ingested on several data sets "
                         f"({', '.join(r[names.index('dataset')] for r in rows)}); choose one with --dataset")
    return dict(zip(names, rows[0]))


def classes_of(cat: Catalog, dataset: str) -> list[str]:
    return [r[0] for r in cat.con.execute("SELECT DISTINCT label FROM images WHERE dataset = ? ORDER BY 1",
                                          [dataset]).fetchall()]


def _cofs(cat: Catalog, model: str, dataset: str):
    freq = cat.query("SELECT layer, unit, label, count FROM class_frequencies WHERE model = ? AND dataset = ?",
                     [model, dataset])
    units = cat.query("SELECT layer, unit, dead FROM units WHERE model = ? AND dataset = ?", [model, dataset])
    return analyses.cof_matrices(freq, units, classes_of(cat, dataset))


def analyze_faceted(cat: Catalog, model: str, dataset: str | None = None) -> dict:
    info = run_info(cat, model, dataset)
    tables = analyses.faceted(model, info["dataset"], _cofs(cat, model, info["dataset"]))
    cat.replace(tables, model, info["dataset"])
    return tables


def analyze_similarity(cat: Catalog, model: str, dataset: str | None = None, k: int | None = 10) -> dict:
    info = run_info(cat, model, dataset)
    tables = analyses.similarity(model, info["dataset"], _cofs(cat, model, info["dataset"]), k)
    cat.replace(tables, model, info["dataset"])
    return tables


def analyze_hierarchy(cat: Catalog, model: str, dataset: str | None = None) -> dict:
    """Rebuild distances, tree and MST from the stored class vectors (no network pass)."""
    info = run_info(cat, model, dataset)
    rows = cat.con.execute("SELECT layer, label, n_images, vector FROM class_vectors WHERE model = ? AND dataset = ? "
                           "ORDER BY label", [model, info["dataset"]]).fetchall()
    if not rows:
        raise UsageError(f"no class vectors for {model!r}: re-run `neurocat ingest` to compute them in the pass")
    vectors = np.stack([analyses.blob_vector(r[3]) for r in rows])
    tables = analyses.hierarchy(model, info["dataset"], rows[0][0], [r[1] for r in rows], vectors,
                                np.array([r[2] for r in rows]))
    cat.replace(tables, model, info["dataset"])
    return tables


def images_of(cat: Catalog, dataset: str) -> LabelledImages:
    (root,) = cat.con.execute("SELECT root FROM datasets WHERE dataset = ?", [dataset]).fetchone()
    rows = cat.con.execute("SELECT path, label FROM images WHERE dataset = ? ORDER BY image_id", [dataset]).fetchall()
    return LabelledImages(dataset, Path(root), [r[0] for r in rows], [r[1] for r in rows])


def model_of(info: dict) -> LoadedModel:
    """Load the network an ingest used, from what the models row recorded."""
    if info["source"] == "torchscript":
        return load_model(info["weights"])
    weights = info["weights"] if info["source"] != "package" else None
    return load_model(info["architecture"], weights)


def pooled_vectors(model: LoadedModel, layer: str, images: LabelledImages, ids: list[int], image_size: int,
                   batch_size: int = 64, device: str = "cpu", progress: bool = True) -> tuple[list[int], np.ndarray]:
    """Global-average-pooled output of ``layer`` for each readable image of ``ids``."""
    net = model.module.to(device).eval()
    mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=device).view(1, 3, 1, 1)
    kept, vectors = [], []
    with LayerTap(net, [layer]) as tap, torch.inference_mode():
        for batch, batch_ids, _errors in tqdm(loader(images, image_size, batch_size, 0, ids), desc="vectors",
                                              unit="batch", disable=not progress):
            if batch is None:
                continue
            x = (batch.to(device).float().div(255) - mean) / std
            tap.run(x, lambda _name, out: vectors.append(out.mean(dim=(2, 3)) if out.dim() == 4 else out))
            kept += batch_ids.tolist()
    return kept, torch.cat(vectors).double().cpu().numpy()


def analyze_filter_tree(cat: Catalog, model: str, label: str, dataset: str | None = None, layer: str | None = None,
                        network: LoadedModel | None = None, batch_size: int = 64, device: str = "cpu",
                        progress: bool = True) -> dict:
    """Algorithm 2 for one class, over its images' pooled vectors of ``layer`` (default the hierarchy layer).

    The network is re-run on that class's images only; ``network`` overrides the one the models row names.
    """
    info = run_info(cat, model, dataset)
    ds = info["dataset"]
    layer = layer or info["hierarchy_layer"]
    ids = [r[0] for r in cat.con.execute("SELECT image_id FROM images WHERE dataset = ? AND label = ? ORDER BY 1",
                                         [ds, label]).fetchall()]
    if not ids:
        raise UsageError(f"no images of class {label!r} in {ds!r}; classes: {', '.join(classes_of(cat, ds)[:20])}")
    network = network or model_of(info)
    kept, vectors = pooled_vectors(network, layer, images_of(cat, ds), ids, info["image_size"], batch_size,
                                   device, progress)
    tables = analyses.filter_tree_tables(model, ds, label, layer, kept, vectors)
    cat.replace(tables, model, ds, label=label)  # other classes' trees stay
    return tables
