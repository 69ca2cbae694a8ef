"""Neuron ablation (after Morcos et al. 2018): zero one channel at a time and measure each class's
top-1 accuracy on a held-out split of the data set.

The classifier's outputs must be the data set's classes: either as many outputs as classes, in
sorted class order (ImageFolder's), or the 1,000 ImageNet-1k outputs with WordNet-id labels.
"""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from catalog import Catalog

from .analyze import images_of, model_of, run_info
from .errors import UsageError
from .labels import imagenet_classes
from .models import LoadedModel
from .network import Network, image_batches, network_pass
from .taps import is_script


def held_out(paths: list[str], fraction: float) -> list[int]:
    """A deterministic ``fraction`` of the images, chosen by a hash of the path (not by read order)."""
    if not 0 < fraction <= 1:
        raise UsageError(f"--split must be in (0, 1], not {fraction}")
    return [i for i, p in enumerate(paths) if zlib.crc32(p.encode()) % 10_000 < fraction * 10_000]


def output_classes(classes: list[str], n_outputs: int) -> list[str]:
    """The class of each output of the classifier."""
    if n_outputs == len(classes):
        return sorted(classes)
    if n_outputs == 1000 and set(classes) <= set(imagenet_classes()):
        return imagenet_classes()
    raise UsageError(f"the model has {n_outputs} outputs but the data set has {len(classes)} classes; ablation "
                     "needs one output per class (sorted class order) or ImageNet-1k outputs with WordNet-id labels")


def ablate(cat: Catalog, model: str, layer: str, units: list[int] | None = None, dataset: str | None = None,
           split: float = 0.2, batch_size: int = 32, device: str | None = None, network: LoadedModel | None = None,
           progress: bool = True) -> dict[str, int]:
    """Per (unit, class): accuracy with the unit's channel zeroed minus the intact accuracy, into ``ablation``."""
    info = run_info(cat, model, dataset)
    ds = info["dataset"]
    units = cat.select_units(model, ds, layer, units)
    images = images_of(cat, ds)
    ids = held_out(images.paths, split)
    if not ids:
        raise UsageError(f"the held-out split of {split} holds no image of {len(images)}; raise --split")
    ready = Network(network or model_of(info), device)
    net = ready.module
    if is_script(net):
        raise UsageError("ablation zeroes a channel with a forward hook, which TorchScript does not run; "
                         "give the architecture with --weights instead")
    module = dict(net.named_modules())[layer]
    ablated: list[int | None] = [None]  # the channel to zero in the current forward pass

    def zero(_module, _inputs, out):
        if ablated[0] is None:
            return None
        out = out.clone()
        out[:, ablated[0]] = 0
        return out

    label_of = np.array(images.labels)
    classes = sorted(set(images.classes))
    class_index = {c: i for i, c in enumerate(classes)}
    correct = np.zeros((len(units) + 1, len(classes)), dtype=np.int64)  # row 0: intact
    totals = np.zeros(len(classes), dtype=np.int64)
    outputs: list[str] = []
    def score(batch, _layer, scores):
        nonlocal outputs
        outputs = outputs or output_classes(classes, scores.shape[1])
        predicted = scores.argmax(1).cpu().numpy()
        hit = np.array([outputs[p] for p in predicted]) == label_of[batch.ids_cpu.numpy()]
        np.add.at(correct[slot], truth, hit.astype(np.int64))

    handle = module.register_forward_hook(zero)
    try:
        for batch in tqdm(image_batches(images, ids, ready.device, info["image_size"], batch_size, 0),
                          desc=f"ablate {layer}", unit="batch", disable=not progress):
            if not len(batch):
                continue
            truth = np.array([class_index[label] for label in label_of[batch.ids_cpu.numpy()]])
            np.add.at(totals, truth, 1)
            for slot, unit in enumerate([None] + units):  # the intact network, then each unit zeroed
                ablated[0] = unit
                for _ in network_pass(ready, [batch], None, score, progress=False):
                    pass
    finally:
        handle.remove()
    present = totals > 0
    base = correct[0] / np.maximum(totals, 1)
    out = {c: [] for c in ("unit", "label", "n_images", "base_accuracy", "accuracy", "delta_accuracy")}
    for slot, unit in enumerate(units, start=1):
        accuracy = correct[slot] / np.maximum(totals, 1)
        for k in np.flatnonzero(present):
            for key, value in (("unit", unit), ("label", classes[k]), ("n_images", int(totals[k])),
                               ("base_accuracy", float(base[k])), ("accuracy", float(accuracy[k])),
                               ("delta_accuracy", float(accuracy[k] - base[k]))):
                out[key].append(value)
    n = len(out["unit"])
    table = pa.table({"model": [model] * n, "dataset": [ds] * n, "layer": [layer] * n, **out})
    cat.replace({"ablation": table}, model, ds, layer=layer, unit=units)
    return {"ablation": n}
