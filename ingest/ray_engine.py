"""`--engine ray`: image decoding in Ray tasks, the model in an actor pool, the reduction on the driver.

Ray Data gives actors no end-of-stream hook, so each model batch emits its deltas (per image and
neuron: spatial maximum and where; per image: pooled class vector and colour sum) and the driver
folds them into the same reducers as the local scan. The driver keeps the first copy of each
image, so a batch re-run after an actor died never counts twice; with order preserved the sums
are added in the local order, so the catalogue equals a local run's.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .data import LabelledImages, model_view, read_rgb
from .models import LoadedModel, load_model
from .pipeline import IngestOptions, LayerInfo, Scan, normaliser
from .runningstats import ClassMean, TopK
from .taps import LayerTap, is_script


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
    """An actor holding the network; returns per-image maxima of every layer."""

    def __init__(self, model: LoadedModel | str, layers: list[str], hierarchy: str, device: str):
        self.model = load_model(model) if isinstance(model, str) else model
        self.device = torch.device(device)
        self.net = self.model.module.to(self.device).eval()
        self.layers, self.hierarchy = layers, hierarchy
        self.tap = LayerTap(self.net, layers + [hierarchy] * (hierarchy not in layers))
        self.mean, self.std = normaliser(self.model, self.device)

    def __call__(self, batch: dict) -> dict:
        images = torch.from_numpy(batch["image"]).to(self.device)
        out = {k: batch[k] for k in ("id", "ok", "error")}
        out["colour"] = images.sum(dim=(2, 3), dtype=torch.int64).cpu().numpy()
        found = {}

        def observe(name, value):
            if value.dim() == 2:
                value = value[:, :, None, None]
            if name == self.hierarchy:
                found["pooled"] = value.mean(dim=(2, 3)).float().cpu().numpy()
            if name in self.layers:
                v, p = value.flatten(2).max(dim=2)
                found[f"v{self.layers.index(name)}"] = v.float().cpu().numpy()
                found[f"p{self.layers.index(name)}"] = p.cpu().numpy()

        with torch.inference_mode():
            self.tap.run((images.float().div_(255) - self.mean) / self.std, observe)
        return {**out, **found}


def scan(model: LoadedModel, layer_names: list[str], images: LabelledImages, options: IngestOptions,
         address: str | None = None, workers: int = 1, gpus_per_worker: float = 0.0) -> Scan:
    """The streaming pass on Ray; returns the same Scan as the local engine."""
    import ray.data

    init(address)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    device = torch.device("cuda" if gpus_per_worker else "cpu")
    hierarchy = options.hierarchy_layer or layer_names[-1]
    infos = {n: LayerInfo(n, i, type(dict(model.module.named_modules()).get(n)).__name__)
             for i, n in enumerate(layer_names)}

    def shape(name, out):
        info = infos[name]
        info.channels = out.shape[1]
        info.out_height, info.out_width = (out.shape[2], out.shape[3]) if out.dim() == 4 else (1, 1)

    with LayerTap(model.module.eval(), layer_names) as tap, torch.inference_mode():  # the layers' output shapes
        tap.run(torch.zeros(1, 3, options.image_size, options.image_size), shape)
    result = Scan({n: TopK(infos[n].channels, options.top_n) for n in layer_names}, infos,
                  colour_sum=torch.zeros(3, dtype=torch.int64), pixels_per_image=options.image_size ** 2,
                  hierarchy_layer=hierarchy)
    classes = {c: i for i, c in enumerate(images.classes)}
    label_ids = torch.tensor([classes[label] for label in images.labels])
    remote_model = model.weights if is_script(model.module) else model
    ds = (ray.data.from_items([{"id": i} for i in range(len(images))])
          .map_batches(_decode, fn_kwargs={"images": images, "size": options.image_size},
                       batch_size=options.batch_size, num_cpus=1)
          .map_batches(_Scanner, fn_constructor_args=(remote_model, layer_names, hierarchy, str(device)),
                       batch_size=options.batch_size, concurrency=workers, num_cpus=1, num_gpus=gpus_per_worker,
                       max_task_retries=3, max_restarts=3))
    seen: set[int] = set()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        ids = batch["id"].astype(np.int64)
        fresh = np.array([i not in seen for i in ids.tolist()], dtype=bool)
        seen.update(ids.tolist())
        bad = fresh & ~batch["ok"]
        result.errors.extend((int(i), str(e)) for i, e in zip(ids[bad], batch["error"][bad]))
        keep = fresh & batch["ok"]
        if not keep.any():
            continue
        kept = torch.from_numpy(ids[keep])
        for k, name in enumerate(layer_names):
            result.tops[name].update(torch.from_numpy(batch[f"v{k}"][keep]), kept,
                                     torch.from_numpy(batch[f"p{k}"][keep]))
        pooled = torch.from_numpy(batch["pooled"][keep])
        if result.class_mean is None:
            result.class_mean = ClassMean(len(classes), pooled.shape[1])
        result.class_mean.update(pooled, label_ids[kept])
        result.colour_sum += torch.from_numpy(batch["colour"][keep]).sum(0)
        result.n_seen += int(keep.sum())
    return result
