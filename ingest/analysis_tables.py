"""The analyses of Sadeghi and "What do CNN neurons learn" as Arrow tables, keyed by (model, dataset).

Each function takes what an ingest has in memory or what a catalogue holds (the same rows),
so `neurocat ingest` and `neurocat analyze` share one implementation.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pyarrow as pa

from .faceted import flatness, gini_sparsity, layer_zscores, mf_degree
from .hierarchy import category_mst, category_tree, cosine_distances, filter_tree
from .similarity import layer_similarity

FACETED_INDEXES = ("sparsity", "flatness", "mf_degree", "mf_zscore", "mf_pvalue")


def _table(columns: dict, schema: dict | None = None) -> pa.Table:
    if schema:
        return pa.table({k: pa.array(v, type=schema.get(k)) for k, v in columns.items()})
    return pa.table(columns)


def cof_matrices(class_frequencies: pa.Table, units: pa.Table, classes: list[str]) -> dict[str, tuple]:
    """Per layer: (CoF counts (C, K), dead (C,) bool), from class_frequencies and units rows."""
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    u = units.select(["layer", "unit", "dead"]).to_pydict()
    sizes: dict[str, int] = {}
    for layer, unit in zip(u["layer"], u["unit"]):
        sizes[layer] = max(sizes.get(layer, 0), unit + 1)
    for layer, n in sizes.items():
        out[layer] = (np.zeros((n, len(classes))), np.zeros(n, dtype=bool))
    for layer, unit, dead in zip(u["layer"], u["unit"], u["dead"]):
        out[layer][1][unit] = bool(dead)
    f = class_frequencies.select(["layer", "unit", "label", "count"]).to_pydict()
    for layer, unit, label, count in zip(f["layer"], f["unit"], f["label"], f["count"]):
        out[layer][0][unit, index[label]] = count
    return out


def faceted(model: str, dataset: str, cofs: dict[str, tuple]) -> dict[str, pa.Table]:
    """Sparsity, flatness, MF degree, its z-score and p-value within the layer (NULL for dead neurons)."""
    cols = {k: [] for k in ("model", "dataset", "layer", "unit", "index", "value")}
    for layer, (cof, dead) in cofs.items():
        s, f = gini_sparsity(cof), flatness(cof)
        s[dead], f[dead] = np.nan, np.nan
        d = mf_degree(s, f)
        z, p = layer_zscores(d)
        for name, values in zip(FACETED_INDEXES, (s, f, d, z, p)):
            n = len(values)
            cols["model"] += [model] * n
            cols["dataset"] += [dataset] * n
            cols["layer"] += [layer] * n
            cols["unit"] += range(n)
            cols["index"] += [name] * n
            cols["value"] += [None if np.isnan(v) else float(v) for v in values]
    return {"neuron_indexes": _table(cols, {"value": pa.float64(), "unit": pa.int64()})}


def similarity(model: str, dataset: str, cofs: dict[str, tuple], k: int | None = 10) -> dict[str, pa.Table]:
    """Top-k most similar live neurons per live neuron (``k=None``: every pair) and per-layer means."""
    pairs = {c: [] for c in ("model", "dataset", "layer", "unit_a", "unit_b", "rank", "pearson", "euclidean")}
    means = {c: [] for c in ("model", "dataset", "layer", "n_neurons", "mean_pearson", "mean_euclidean")}
    for layer, (cof, dead) in cofs.items():
        live = np.flatnonzero(~dead)
        sim = layer_similarity(cof[live])
        a, b = sim.top_pairs(k)
        ranks = np.concatenate([np.arange(1, np.sum(a == i) + 1) for i in range(len(live))]) if len(a) else a
        pairs["model"] += [model] * len(a)
        pairs["dataset"] += [dataset] * len(a)
        pairs["layer"] += [layer] * len(a)
        pairs["unit_a"] += live[a].tolist()
        pairs["unit_b"] += live[b].tolist()
        pairs["rank"] += ranks.tolist()
        pairs["pearson"] += [None if np.isnan(v) else float(v) for v in sim.pearson[a, b]]
        pairs["euclidean"] += sim.euclidean[a, b].tolist()
        for key, value in (("model", model), ("dataset", dataset), ("layer", layer), ("n_neurons", len(live)),
                           ("mean_pearson", sim.mean_pearson()), ("mean_euclidean", sim.mean_euclidean())):
            means[key].append(None if isinstance(value, float) and np.isnan(value) else value)
    schema = {"unit_a": pa.int64(), "unit_b": pa.int64(), "rank": pa.int64(), "pearson": pa.float64(),
              "euclidean": pa.float64(), "mean_pearson": pa.float64(), "mean_euclidean": pa.float64()}
    return {"similarity_pairs": _table(pairs, schema), "layer_similarity": _table(means, schema)}


def vector_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def blob_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float64)


def hierarchy(model: str, dataset: str, layer: str, classes: list[str], vectors: np.ndarray,
              counts: np.ndarray) -> dict[str, pa.Table]:
    """Class vectors, their cosine distances, the WPGMA category tree and the MST (classes with images only)."""
    keep = np.flatnonzero(counts > 0)
    labels = [classes[i] for i in keep]
    vectors = np.asarray(vectors)[keep]
    d = cosine_distances(vectors)
    tree = category_tree(d)
    k = len(labels)
    mst = category_mst(d)
    n_nodes = len(tree.parent)
    return {
        "class_vectors": _table({"model": [model] * k, "dataset": [dataset] * k, "layer": [layer] * k,
                                 "label": labels, "n_images": counts[keep].tolist(),
                                 "vector": [vector_blob(v) for v in vectors]}),
        "class_distances": _table({"model": [model] * k * k, "dataset": [dataset] * k * k,
                                   "label_a": [labels[i] for i in range(k) for _ in range(k)],
                                   "label_b": [labels[j] for _ in range(k) for j in range(k)],
                                   "distance": d.ravel().tolist()}, {"distance": pa.float64()}),
        "category_tree": _table({"model": [model] * n_nodes, "dataset": [dataset] * n_nodes,
                                 "node": list(range(n_nodes)),
                                 "parent": [None if p < 0 else int(p) for p in tree.parent],
                                 "height": tree.height.tolist(),
                                 "label": [labels[i] if i < k else None for i in range(n_nodes)]},
                                {"parent": pa.int64(), "label": pa.string()}),
        "category_mst": _table({"model": [model] * len(mst), "dataset": [dataset] * len(mst),
                                "label_a": [min(labels[a], labels[b]) for a, b, _ in mst],
                                "label_b": [max(labels[a], labels[b]) for a, b, _ in mst],
                                "distance": [w for _, _, w in mst]}, {"distance": pa.float64()}),
    }


def filter_tree_tables(model: str, dataset: str, label: str, layer: str, image_ids: list[int],
                       vectors: np.ndarray) -> dict[str, pa.Table]:
    """Algorithm 2's tree for one class: nodes (with critical filters) and edges."""
    tree = filter_tree(vectors)
    n = len(tree.parent)
    leaves = len(image_ids)
    nodes = {"model": [model] * n, "dataset": [dataset] * n, "label": [label] * n, "layer": [layer] * n,
             "node": list(range(n)), "parent": [None if p < 0 else p for p in tree.parent],
             "image_id": [image_ids[i] if i < leaves else None for i in range(n)],
             "n_images": tree.members, "n_reachable": [int(r.sum()) for r in tree.reachable],
             "critical_unit": tree.critical, "distance": tree.distance}
    children = [(p, c) for c, p in enumerate(tree.parent) if p >= 0]
    edges = {"model": [model] * len(children), "dataset": [dataset] * len(children),
             "label": [label] * len(children), "parent": [p for p, _ in children], "child": [c for _, c in children]}
    return {"filter_tree_nodes": _table(nodes, {"parent": pa.int64(), "image_id": pa.int64(),
                                                "critical_unit": pa.int64(), "distance": pa.float64()}),
            "filter_tree_edges": _table(edges, {"parent": pa.int64(), "child": pa.int64()})}


def png_bytes(array: np.ndarray) -> bytes:
    """A PNG of an (h, w) gray, (h, w, 3) RGB or (h, w, 4) RGBA uint8 picture.

    Written here rather than by PIL because every ingest encodes one per neuron and PIL's encoder
    showed in the time per neuron: each row is stored as its difference from the row above (PNG
    filter "up", a few % larger than PIL's choice on NFs) and deflated at zlib level 1; 2x faster.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or not array.shape[0] or not array.shape[1]:
        raise ValueError(f"a PNG needs an (h, w), (h, w, 3) or (h, w, 4) picture, not shape {array.shape}")
    if array.dtype != np.uint8:  # integers in 0..255 only: a float picture in [0, 1] would come out black
        if array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255:
            raise ValueError(f"a PNG needs 8-bit values (integers 0..255), not {array.dtype}")
        array = array.astype(np.uint8)
    array = np.ascontiguousarray(array)
    h, w, channels = array.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = array.reshape(h, w * channels)
    scanlines = np.empty((h, 1 + w * channels), dtype=np.uint8)
    scanlines[:, 0] = 2                                      # filter "up" on every row
    scanlines[:1, 1:] = rows[:1]                             # (the row above the first is zeros)
    np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])  # uint8 wraps modulo 256, as PNG's filter does

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 1)) + chunk(b"IEND", b""))
