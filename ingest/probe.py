"""`neurocat probe`: which catalogued neurons fire for some images outside the data set.

The network of an ingested (model, dataset) is run on the images as the ingest saw its own (same
decoding, size and normalisation); per (image, neuron) of the chosen layers the activation (the
spatial maximum, docs/science.md §1) and its ratio to the neuron's catalogued ``a_max`` land in
``probe_activations``, keyed by the file's content hash. The view ``probe_neurons`` joins ``neurons``.
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import torch
from PIL import UnidentifiedImageError

from catalog import Catalog

from .analyze import model_of, run_info
from .data import model_view, read_rgb
from .errors import UsageError
from .models import LoadedModel
from .network import Batch, Network, network_pass
from .record import as_maps

SCHEMA = pa.schema([("model", pa.string()), ("dataset", pa.string()), ("layer", pa.string()), ("unit", pa.int32()),
                    ("image_path", pa.string()), ("image_sha256", pa.string()), ("activation", pa.float64()),
                    ("rel_activation", pa.float64()), ("probed_at", pa.timestamp("us"))])


@dataclass
class ProbeImage:
    path: str            # absolute, as recorded
    sha256: str          # of the file's bytes
    pixels: torch.Tensor  # uint8 (3, S, S), as the model sees it


def read_images(paths: Iterable[str | Path], image_size: int) -> list[ProbeImage]:
    """Every file decoded as the ingest decodes (``read_rgb`` + ``model_view``), each content once.
    Any unreadable file is a usage error naming it, before anything is computed or written."""
    images: dict[str, ProbeImage] = {}
    for given in paths:
        path = Path(given)
        try:
            data = path.read_bytes()
            pixels = model_view(read_rgb(io.BytesIO(data), image_size), image_size)  # the bytes that were hashed
        except OSError as exc:
            why = "not an image file PIL can decode" if isinstance(exc, UnidentifiedImageError) else exc.strerror or exc
            raise UsageError(f"cannot read image {path}: {why}") from None
        except Exception as exc:  # noqa: BLE001 - any decoder failure means the same to the user
            raise UsageError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        images.setdefault(digest, ProbeImage(str(path.resolve()), digest, pixels))
    if not images:
        raise UsageError("no image to probe: give one or more image files")
    return list(images.values())


def choose_layers(ingested: list[str], patterns: list[str] | None, model: str, dataset: str) -> list[str]:
    """The ingested layers matching ``patterns`` (names or globs), in model order; default all."""
    if not patterns:
        return list(ingested)
    for pattern in patterns:
        if not any(n == pattern or fnmatch.fnmatchcase(n, pattern) for n in ingested):
            raise UsageError(f"no ingested layer of {model!r} on {dataset!r} matches {pattern!r}; "
                             f"ingested layers: {', '.join(ingested)}")
    return [n for n in ingested if any(n == p or fnmatch.fnmatchcase(n, p) for p in patterns)]


def probe(cat: Catalog, model: str, paths: Iterable[str | Path], dataset: str | None = None,
          layers: list[str] | None = None, device: str | None = None, batch_size: int = 32,
          network: LoadedModel | None = None, progress: bool = False) -> pa.Table:
    """Run the network of (model, dataset) on the image files ``paths`` and store, per image and
    neuron of ``layers`` (default every ingested layer), its activation and activation / a_max in
    ``probe_activations``; an image probed before (same content) has those rows replaced.
    ``network`` overrides the model the ``models`` row names. Returns the rows written."""
    info = run_info(cat, model, dataset)
    dataset, image_size = info["dataset"], info["image_size"]
    chosen = choose_layers(cat.layer_names(model, dataset), layers, model, dataset)
    images = read_images(paths, image_size)
    a_max: dict[str, list[float]] = {}
    for layer, unit, value in cat.rows("SELECT layer, unit, a_max FROM units WHERE model = ? AND dataset = ? "
                                       "ORDER BY layer, unit", [model, dataset]):
        a_max.setdefault(layer, []).append(value)
    net = Network(network or model_of(info), device)
    maxima: dict[str, list[torch.Tensor]] = {layer: [] for layer in chosen}

    def keep(batch: Batch, layer: str, out: torch.Tensor) -> None:
        maxima[layer].append(as_maps(out, layer).flatten(2).max(dim=2).values.float().cpu())

    def batches():
        for lo in range(0, len(images), batch_size):
            chunk = images[lo:lo + batch_size]
            ids = torch.arange(lo, lo + len(chunk))  # host: positions in the host-side list of images
            yield Batch(ids.to(net.device), ids, torch.stack([im.pixels for im in chunk]).to(net.device))

    for _ in network_pass(net, batches(), chosen, keep, desc="probe", total=len(images), progress=progress):
        pass
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    parts = []
    for layer in chosen:
        values = torch.cat(maxima[layer]).double().numpy()  # (images, channels)
        tops = np.array(a_max[layer], dtype=np.float64)
        if values.shape[1] != len(tops):
            raise UsageError(f"layer {layer} of the network has {values.shape[1]} channels, the catalogue "
                             f"{len(tops)}: this is not the network {model!r} was ingested with")
        live = tops > 0  # a dead neuron (a_max <= 0) has no scale: NULL
        rel = np.divide(values, tops, out=np.zeros_like(values), where=live)
        n_images, n_units = values.shape
        parts.append(pa.table({
            "model": [model] * values.size, "dataset": [dataset] * values.size, "layer": [layer] * values.size,
            "unit": np.tile(np.arange(n_units, dtype=np.int32), n_images),
            "image_path": np.repeat([im.path for im in images], n_units),
            "image_sha256": np.repeat([im.sha256 for im in images], n_units),
            "activation": values.ravel(),
            "rel_activation": pa.array(rel.ravel(), mask=~np.tile(live, n_images)),
            "probed_at": pa.array([now] * values.size, pa.timestamp("us"))}, schema=SCHEMA))
    table = pa.concat_tables(parts)
    cat.replace({"probe_activations": table}, model, dataset, image_sha256=[im.sha256 for im in images], layer=chosen)
    return table


def top_neurons(cat: Catalog, model: str, dataset: str, probed: pa.Table, top: int = 10) -> pa.Table:
    """Per probed image (in the order given), its ``top`` neurons by rel_activation (dead ones last),
    with their catalogued α, γ and colour name, from the ``probe_neurons`` view."""
    hashes = list(dict.fromkeys(probed.column("image_sha256").to_pylist()))
    layers = sorted(set(probed.column("layer").to_pylist()))
    parts = [cat.query(
        "SELECT p.image_path, p.layer, p.unit, p.activation, p.rel_activation, p.alpha, p.gamma, p.color_name "
        "FROM probe_neurons AS p JOIN layers AS l ON l.model = p.model AND l.dataset = p.dataset AND l.layer = p.layer "
        f"WHERE p.model = ? AND p.dataset = ? AND p.image_sha256 = ? AND p.layer IN ({', '.join('?' * len(layers))}) "
        "ORDER BY p.rel_activation DESC NULLS LAST, p.activation DESC, l.layer_index, p.unit LIMIT ?",
        [model, dataset, h, *layers, top]) for h in hashes]
    return pa.concat_tables(parts)
