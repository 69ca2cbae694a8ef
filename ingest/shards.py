"""Engine-free scale-out: `ingest --shard i/n --out DIR` scans a deterministic 1/n of the images and
saves its reducer state; `neurocat merge DIR… --catalog …` merges the states and finishes the run.

A shard is chosen by image id (``id % n == i - 1``; ids come from the sorted manifest, not read
order). Each shard keeps its images' own contributions to the sums (pooled class vectors, colour),
so merging de-duplicates by image: retried and overlapping shards give exactly a single run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from .analyze import model_of
from .data import LabelledImages, open_images
from .errors import UsageError
from .models import LoadedModel
from .pipeline import (IngestOptions, IngestSummary, LayerInfo, Scan, _check_catalogue, _layers, finish,
                       run_fingerprint, scan)
from .runningstats import ClassMean, TopK

STATE = "shard.pt"
SPEC = "run.json"


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like 3/16, not {text!r}") from None
    if not 1 <= i <= n:
        raise UsageError(f"--shard {text}: the index must be between 1 and {n}")
    return i, n


def ingest_shard(model: LoadedModel, images: LabelledImages, data: str, out: Path, shard: str,
                 model_name: str | None, layers: list[str] | None, options: IngestOptions) -> int:
    """Scan shard ``i/n`` and write its state and run description to ``out``; returns images scanned."""
    i, n = parse_shard(shard)
    layer_names = _layers(model, layers, options)
    ids = [j for j in range(len(images)) if j % n == i - 1]
    result = scan(model, layer_names, images, options, ids=ids, per_image=True)
    out.mkdir(parents=True, exist_ok=True)
    pi = result.per_image
    state = {"fingerprint": run_fingerprint(model, layer_names, images, options), "scan": result.state_dict(),
             "ids": torch.cat(pi["ids"]) if pi["ids"] else torch.empty(0, dtype=torch.int64),
             "pooled": torch.cat(pi["pooled"]) if pi["pooled"] else torch.empty(0),
             "colour": torch.cat(pi["colour"]) if pi["colour"] else torch.empty(0, 3, dtype=torch.int64)}
    spec = {"shard": shard, "model": {"architecture": model.architecture, "source": model.source,
                                      "weights": model.weights},
            "model_name": model_name or model.architecture, "data": data, "dataset": images.name,
            "layers": layer_names, "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "progress"}}
    for name, content in ((STATE, state), (SPEC, spec)):  # temporary name, then rename
        tmp = out / f".{name}.tmp"
        if name == STATE:
            torch.save(content, tmp)
        else:
            tmp.write_text(json.dumps(content, indent=2))
        os.replace(tmp, out / name)
    return result.n_seen


def merge(parts: list[Path], catalog_path: Path, progress: bool = True) -> IngestSummary:
    """Merge shard states (dropping duplicate images) and finish the run into the catalogue."""
    start = time.perf_counter()
    missing = [str(p) for p in parts if not (p / STATE).exists()]
    if missing:
        raise UsageError(f"not a finished shard (no {STATE}): {', '.join(missing)}")
    specs = [json.loads((p / SPEC).read_text()) for p in parts]
    states = [torch.load(p / STATE, map_location="cpu", weights_only=True) for p in parts]
    if len({s["fingerprint"] for s in states}) != 1:
        raise UsageError("these shards come from different runs (model, layers, data set or options differ)")
    spec = specs[0]
    options = IngestOptions(**{**spec["options"], "progress": progress})
    model = model_of(spec["model"])
    images = open_images(spec["data"], spec["dataset"])
    layer_names = spec["layers"]
    if run_fingerprint(model, layer_names, images, options) != states[0]["fingerprint"]:
        raise UsageError(f"the data set at {spec['data']} or the model changed since the shards were scanned")
    _check_catalogue(catalog_path, images, spec["model_name"])
    device = options.resolved_device()

    result = Scan({}, {}, hierarchy_layer=options.hierarchy_layer or layer_names[-1],
                  pixels_per_image=options.image_size ** 2)
    modules = dict(model.module.named_modules())
    result.layers = {n: LayerInfo(n, i, type(modules[n]).__name__ if n in modules else "Conv2d")
                     for i, n in enumerate(layer_names)}
    first = states[0]["scan"]
    for n, (c, h, w) in first["shapes"].items():
        result.layers[n].channels, result.layers[n].out_height, result.layers[n].out_width = c, h, w
    result.tops = {n: TopK.from_state_dict(t, device) for n, t in first["tops"].items()}
    for state in states[1:]:
        for n, t in state["scan"]["tops"].items():
            result.tops[n].merge(TopK.from_state_dict(t, device))
    # Per image, first copy wins; sums are then taken in id order, as a single run does.
    seen: dict[int, tuple[int, int]] = {}
    for s, state in enumerate(states):
        for row, image_id in enumerate(state["ids"].tolist()):
            seen.setdefault(image_id, (s, row))
    order = sorted(seen)
    result.n_seen = len(order)
    result.colour_sum = torch.zeros(3, dtype=torch.int64, device=device)
    for image_id in order:
        s, row = seen[image_id]
        result.colour_sum += states[s]["colour"][row].to(device)
    if order and states[seen[order[0]][0]]["pooled"].numel():
        class_index = {c: i for i, c in enumerate(images.classes)}
        pooled = torch.stack([states[s]["pooled"][row] for s, row in (seen[j] for j in order)])
        labels = torch.tensor([class_index[images.labels[j]] for j in order])
        result.class_mean = ClassMean(len(class_index), pooled.shape[1], device)
        for lo in range(0, len(order), options.batch_size):  # same additions as a single run's batches
            result.class_mean.update(pooled[lo:lo + options.batch_size].to(device), labels[lo:lo + options.batch_size])
    result.errors = sorted({(int(i), str(e)) for state in states for i, e in state["scan"]["errors"]})
    return finish(model, images, catalog_path, spec["model_name"], layer_names, result, options, start, 0.0)
