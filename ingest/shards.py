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

from .data import LabelledImages, open_images
from .errors import UsageError
from .models import LoadedModel, load_model, model_of
from .network import Network
from .options import IngestOptions, hierarchy_layer
from .pipeline import (IngestSummary, catalogue_writer, check_catalogue, choose_layers, index_scan,
                       print_activations_estimate)
from .record import record, run_fingerprint, scan_state

STATE = "shard.pt"
RUN = "run.json"


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
    """Scan shard ``i/n`` and write its scan state and run description to ``out``; returns images scanned."""
    i, n = parse_shard(shard)
    layer_names = choose_layers(model, layers, options)
    ids = [j for j in range(len(images)) if j % n == i - 1]
    k = len(images) if options.keep_activations is None else options.keep_activations
    print_activations_estimate(model, layer_names, len(images), options, sum(1 for j in ids if j < k))
    network = Network(model, options.device, options.autocast, options.channels_last)
    state = scan_state(layer_names, options.top_n, images, hierarchy_layer(layer_names, options), network.device,
                       per_image=True, chunk=options.batch_size, keep_activations=options.keep_activations)
    record(network, images, state, options, ids=ids)
    out.mkdir(parents=True, exist_ok=True)
    content = {"fingerprint": run_fingerprint(model, layer_names, images, options), "scan": state.state_dict()}
    run = {"shard": shard, "model": {"architecture": model.architecture, "source": model.source,
                                     "weights": model.weights, "seed": model.seed},
           "model_name": model_name or model.architecture, "data": data, "dataset": images.name,
           "layers": layer_names, "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "progress"}}
    for name in (STATE, RUN):  # temporary name, then rename
        tmp = out / f".{name}.tmp"
        if name == STATE:
            torch.save(content, tmp)
        else:
            tmp.write_text(json.dumps(run, indent=2))
        os.replace(tmp, out / name)
    return state.n_seen


def merge(parts: list[Path], catalog_path: Path, progress: bool = True) -> IngestSummary:
    """Fold the shards' scan states (duplicate images count once) and finish the run into the catalogue."""
    start = time.perf_counter()
    missing = [str(p) for p in parts if not (p / STATE).exists()]
    if missing:
        raise UsageError(f"not a finished shard (no {STATE}): {', '.join(missing)}")
    runs = [json.loads((p / RUN).read_text()) for p in parts]
    # One writer per catalogue, from before the merge's own work (crops, NF, indexes) to its load.
    with catalogue_writer(catalog_path, f"merge {runs[0]['model_name']} on {runs[0]['dataset']}"):
        saved = [torch.load(p / STATE, map_location="cpu", weights_only=True) for p in parts]
        if len({s["fingerprint"] for s in saved}) != 1:
            raise UsageError("these shards come from different runs (model, layers, data set or options differ)")
        run = runs[0]
        options = IngestOptions(**{**run["options"], "progress": progress})
        model = _reload(run["model"])
        images = open_images(run["data"], run["dataset"])
        layer_names = run["layers"]
        if run_fingerprint(model, layer_names, images, options) != saved[0]["fingerprint"]:
            raise UsageError(f"the data set at {run['data']} or the model changed since the shards were scanned")
        check_catalogue(catalog_path, images, run["model_name"])
        network = Network(model, options.device, options.autocast, options.channels_last)
        state = None
        for content in saved:
            part = scan_state(layer_names, options.top_n, images, hierarchy_layer(layer_names, options),
                              network.device, per_image=True, chunk=options.batch_size, keep_activations=options.keep_activations)
            part.load_state_dict(content["scan"])
            if state is None:
                state = part
            else:
                state.merge(part)
        return index_scan(network, images, catalog_path, run["model_name"], layer_names, state, options, start, 0.0)


def _reload(info: dict) -> LoadedModel:
    """The shards' network again; a random one from the seed the shards recorded."""
    if info.get("seed") not in (None, 0) and not info.get("weights"):
        return load_model(info["architecture"], None, seed=int(info["seed"]))
    return model_of(info)
