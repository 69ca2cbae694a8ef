"""`--engine ray`: image decoding in Ray tasks, the model in an actor pool, the fold on the driver.

Ray Data gives actors no end-of-stream hook, so each model batch returns the scan state of that
batch alone and the driver merges it into the run's state (the same ``merge`` as shards and
resume). A batch re-run after an actor died is skipped by its image ids, so nothing counts twice;
with order preserved the sums are added in the local order, so the catalogue equals a local run's.
"""
from __future__ import annotations

import io
import os

import numpy as np
import torch

from .data import LabelledImages, model_view, read_rgb
from .models import LoadedModel, load_model
from .network import Batch, Network, network_pass
from .options import IngestOptions, hierarchy_layer
from .record import ScanState, scan_state
from .taps import is_script


def init(address: str | None) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if address in (None, "local"):
        # One logical CPU more than the cores: actors taking every CPU starve the read tasks.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(address="local", num_cpus=(os.cpu_count() or 2) + 1, include_dashboard=False,
                 object_store_memory=256 << 20, log_to_driver=False, _node_ip_address="127.0.0.1")
    else:
        ray.init(address=address, log_to_driver=False)


def _decode(batch: dict, images: LabelledImages, size: int) -> dict:
    """A Ray task: decode a batch of images as the model sees them; failures are recorded, not raised."""
    n = len(batch["id"])
    out = np.zeros((n, 3, size, size), dtype=np.uint8)
    ok, errors = np.zeros(n, dtype=bool), []
    for k, image_id in enumerate(batch["id"].tolist()):
        try:
            out[k] = model_view(read_rgb(images.absolute(image_id)), size).numpy()
            ok[k] = True
            errors.append("")
        except Exception as exc:  # noqa: BLE001 - recorded, like the local loader
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"id": batch["id"], "image": out, "ok": ok, "error": np.array(errors, dtype=object)}


class _Scanner:
    """An actor holding the network; returns each batch's own scan state, serialised."""

    def __init__(self, model: LoadedModel | str, layers: list[str], hierarchy: str, images: LabelledImages,
                 top_n: int, device: str, keep_activations: int | None = 0):
        model = load_model(model) if isinstance(model, str) else model
        self.network = Network(model, device)
        self.layers, self.hierarchy, self.images, self.top_n = layers, hierarchy, images, top_n
        self.keep_activations = keep_activations

    def __call__(self, batch: dict) -> dict:
        ok = batch["ok"]
        ids = torch.from_numpy(batch["id"][ok].astype(np.int64))  # host: ids from Ray
        pixels = torch.from_numpy(batch["image"][ok]).to(self.network.device)  # host: Ray hands numpy; moved at once
        errors = [(int(i), str(e)) for i, e in zip(batch["id"][~ok], batch["error"][~ok])]
        one = Batch(ids.to(self.network.device), ids, pixels, errors)
        state = scan_state(self.layers, min(self.top_n, max(1, len(ids))), self.images, self.hierarchy,
                           self.network.device, keep_activations=self.keep_activations)
        for b in network_pass(self.network, [one], state.layers, state.update_layer, progress=False):
            state.update_batch(b)
        buffer = io.BytesIO()
        torch.save(state.state_dict(), buffer)
        return {"ids": [np.sort(batch["id"].astype(np.int64))], "state": [buffer.getvalue()]}


def record(model: LoadedModel, layer_names: list[str], images: LabelledImages, options: IngestOptions) -> ScanState:
    """The streaming pass on Ray; returns the same scan state as the local engine."""
    import ray.data

    init(options.address)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    device = torch.device("cuda" if options.gpus_per_worker else "cpu")
    hierarchy = hierarchy_layer(layer_names, options)
    state = scan_state(layer_names, options.top_n, images, hierarchy, "cpu", keep_activations=options.keep_activations)
    remote_model = model.weights if is_script(model.module) else model
    ds = (ray.data.from_items([{"id": i} for i in range(len(images))])
          .map_batches(_decode, fn_kwargs={"images": images, "size": options.image_size},
                       batch_size=options.batch_size, num_cpus=1)
          .map_batches(_Scanner, fn_constructor_args=(remote_model, layer_names, hierarchy, images, options.top_n,
                                                      str(device), options.keep_activations),
                       batch_size=options.batch_size, concurrency=options.workers or 1, num_cpus=1,
                       num_gpus=options.gpus_per_worker, max_task_retries=3, max_restarts=3))
    seen: set[int] = set()
    for out in ds.iter_batches(batch_size=1, batch_format="numpy"):
        ids = out["ids"][0].tolist()
        if ids and ids[0] in seen:  # a batch re-run after its actor died: already folded
            continue
        seen.update(ids)
        part = scan_state(layer_names, options.top_n, images, hierarchy, "cpu", keep_activations=options.keep_activations)
        part.load_state_dict(torch.load(io.BytesIO(out["state"][0]), map_location="cpu", weights_only=True))
        state.merge(part)
    return state
