"""Record: the streaming pass over the data set, kept as one mergeable scan state.

A ``ScanState`` is a dict of reducers sharing one protocol (after netdissect's runningstats):
``update(batch, output)`` with one batch (``output`` is the reducer's layer's output, or None for a
reducer of the batch itself), ``merge(other)`` with a peer (a resumed run, a shard, a Ray batch),
``state_dict()`` / ``load_state_dict()`` in plain tensors and numbers (loads with
``weights_only=True``), ``result()``. The local scan, shards + merge, the Ray engine and resume all
fold through these; a new statistic is one reducer and one line in ``scan_state``.

With ``per_image=True`` the sums keep each image's contribution, so states that saw the same image
(retried or overlapping shards) merge exactly: the first copy wins and the sums are redone in id order.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Protocol

import torch

from .data import LabelledImages
from .errors import UsageError
from .models import weights_digest
from .network import Batch, Network, image_batches, network_pass
from .runningstats import ClassMean, TopK, TopKGroup


class Reducer(Protocol):
    layer: str | None  # the layer whose output ``update`` reads; None: it reads the batch

    def update(self, batch: Batch, output: torch.Tensor | None) -> None: ...
    def merge(self, other: "Reducer") -> None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def result(self): ...


def as_maps(output: torch.Tensor, layer: str) -> torch.Tensor:
    """A layer's output as (batch, channels, h, w); a (batch, channels) output is a 1×1 map."""
    if not isinstance(output, torch.Tensor) or output.dim() not in (2, 4):
        raise UsageError(f"layer {layer} outputs {type(output).__name__} {tuple(getattr(output, 'shape', ()))}; "
                         "a layer must output (batch, channels[, h, w])")
    return output[:, :, None, None] if output.dim() == 2 else output


class TopImages:
    """Per neuron of one layer: the top-N images by the spatial maximum, and where it was (docs/science.md §1)."""

    def __init__(self, layer: str, k: int, device: torch.device | str = "cpu", group: TopKGroup | None = None):
        self.layer, self.k, self.device = layer, k, torch.device(device)
        self.group = group  # the scan's layers fold their top-N together (runningstats.TopKGroup)
        self.shape: tuple[int, int, int] | None = None  # (channels, h, w) of the layer's output
        self.top: TopK | None = None

    def update(self, batch: Batch, output: torch.Tensor) -> None:
        maps = as_maps(output, self.layer)
        if self.top is None:
            self.shape = tuple(maps.shape[1:])
            self.top = TopK(self.shape[0], self.k, self.device, group=self.group)
        values, positions = maps.flatten(2).max(dim=2)
        self.top.update(values.float(), batch.ids, positions)

    def merge(self, other: "TopImages") -> None:
        if other.top is None:
            return
        if self.top is None:
            self.shape, self.top = other.shape, TopK(other.top.channels, self.k, self.device, group=self.group)
        self.top.merge(other.top)

    def state_dict(self) -> dict:
        return {"shape": list(self.shape or ()), "top": self.top.state_dict() if self.top else {}}

    def load_state_dict(self, state: dict) -> None:
        self.shape = tuple(int(v) for v in state["shape"]) or None
        if self.top is not None and self.group is not None:
            self.group.leave(self.top)
        self.top = TopK.from_state_dict(state["top"], self.device, self.group) if state["top"] else None

    def result(self) -> TopK | None:
        return self.top


class _PerImage:
    """Rows of per-image contributions, de-duplicated by image id when read (first copy wins)."""

    def __init__(self):
        self.ids: list[torch.Tensor] = []
        self.rows: list[torch.Tensor] = []

    def add(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        self.ids.append(ids.cpu())
        self.rows.append(rows.cpu())

    def extend(self, other: "_PerImage") -> None:
        self.ids += other.ids
        self.rows += other.rows

    def unique(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids ascending, rows) with each image once."""
        if not self.ids:
            return torch.empty(0, dtype=torch.int64), torch.empty(0)  # host: per-image rows are kept on the CPU
        ids, rows = torch.cat(self.ids), torch.cat(self.rows)
        first = {}
        for row, image_id in enumerate(ids.tolist()):
            first.setdefault(image_id, row)
        order = sorted(first)
        return torch.tensor(order, dtype=torch.int64), rows[[first[i] for i in order]]  # host: per-image rows are kept on the CPU

    def state_dict(self) -> dict:
        ids, rows = self.unique()
        return {"ids": ids, "rows": rows}

    def load_state_dict(self, state: dict) -> None:
        self.ids, self.rows = [state["ids"]], [state["rows"]]


class ImageActivations:
    """Per neuron of one layer, the spatial max and mean on each image of the probe set: the first ``k``
    image ids (the recorded order; ``k`` None: every image), in float16, for matching by activations
    (docs/science.md §23). Each batch's values move to host memory at once, so the device holds one
    batch of them whatever K is (``all`` on ImageNet would not fit a GPU); update, merge, resume and
    the result all keep them there. Images are keyed by id, so any merge order gives the same rows
    (the first copy of an image wins)."""

    def __init__(self, layer: str, k: int | None, device: torch.device | str = "cpu"):
        # ``device`` is the scan's; the kept values live on the host whatever it is.
        self.layer, self.k, self.device = layer, k, torch.device("cpu")
        self.kept = _PerImage()  # rows (images, 2, units): max and mean

    def update(self, batch: Batch, output: torch.Tensor) -> None:
        keep = torch.ones(len(batch), dtype=torch.bool) if self.k is None else batch.ids_cpu < self.k  # host: ids_cpu
        if not keep.any():  # a host-side test: no device sync on the batches past the probe set
            return
        maps = as_maps(output, self.layer).flatten(2)
        if not keep.all():  # only then: indexing copies the whole output
            maps = maps[torch.nonzero(keep).squeeze(1).to(output.device)]
        # Stacked in float32 (exact for any scan dtype; autocast rejects stacking halves), then rounded once.
        self.kept.add(batch.ids_cpu[keep], torch.stack([maps.amax(dim=2).float(), maps.float().mean(dim=2)], 1).half())

    def merge(self, other: "ImageActivations") -> None:
        self.kept.extend(other.kept)

    def state_dict(self) -> dict:
        kept = self.result()
        if kept is None:
            return {}
        return {"ids": kept[0], "max": kept[1], "mean": kept[2]}

    def load_state_dict(self, state: dict) -> None:
        self.kept = _PerImage()
        if state:
            self.kept.add(state["ids"], torch.stack([state["max"], state["mean"]], 1))

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(image ids ascending, max (images × units), mean (images × units)), float16 on the CPU; None before any image."""
        if not self.kept.ids:
            return None
        ids, rows = self.kept.unique()
        return ids, rows[:, 0].contiguous(), rows[:, 1].contiguous()


class ClassMeans:
    """Per class, the mean pooled output of one layer: the class representative vectors (docs/science.md §9)."""

    def __init__(self, layer: str, label_ids: torch.Tensor, classes: int, device: torch.device | str = "cpu",
                 per_image: bool = False, chunk: int = 64):
        self.layer, self.classes, self.device = layer, classes, torch.device(device)
        self.label_ids = label_ids.to(self.device)  # class of every image id
        self.chunk = chunk  # per-image states are summed in chunks of this size, as the batches were
        self.mean: ClassMean | None = None
        self.per_image = _PerImage() if per_image else None

    def update(self, batch: Batch, output: torch.Tensor) -> None:
        pooled = as_maps(output, self.layer).float().mean(dim=(2, 3))
        if self.per_image is not None:
            self.per_image.add(batch.ids, pooled)
            return
        if self.mean is None:
            self.mean = ClassMean(self.classes, pooled.shape[1], self.device)
        self.mean.update(pooled, self.label_ids[batch.ids])

    def merge(self, other: "ClassMeans") -> None:
        if self.per_image is not None and other.per_image is not None:
            self.per_image.extend(other.per_image)
        elif other.mean is not None:
            if self.mean is None:
                self.mean = ClassMean(self.classes, other.mean.sums.shape[1], self.device)
            self.mean.merge(other.mean)

    def state_dict(self) -> dict:
        if self.per_image is not None:
            return {"per_image": self.per_image.state_dict()}
        return {"mean": self.mean.state_dict() if self.mean is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        if "per_image" in state:
            self.per_image = _PerImage()
            self.per_image.load_state_dict(state["per_image"])
        elif state["mean"]:
            self.mean = ClassMean(self.classes, state["mean"]["sums"].shape[1], self.device)
            self.mean.load_state_dict(state["mean"])

    def result(self) -> ClassMean | None:
        if self.per_image is None:
            return self.mean
        ids, rows = self.per_image.unique()
        if not len(ids):
            return None
        mean = ClassMean(self.classes, rows.shape[1], self.device)
        for lo in range(0, len(ids), self.chunk):  # the additions of a single run's batches
            mean.update(rows[lo:lo + self.chunk].to(self.device), self.label_ids[ids[lo:lo + self.chunk].to(self.device)])
        return mean


class ColourSum:
    """Σ of the uint8 pixel values per colour channel and the images counted: the data set's mean colour."""

    layer = None

    def __init__(self, device: torch.device | str = "cpu", per_image: bool = False):
        self.device = torch.device(device)
        self.sums = torch.zeros(3, dtype=torch.int64, device=self.device)  # exact in any order
        self.n = 0
        self.per_image = _PerImage() if per_image else None

    def update(self, batch: Batch, output=None) -> None:
        if batch.pixels is None:
            return
        colour = batch.pixels.sum(dim=(2, 3), dtype=torch.int64)
        if self.per_image is not None:
            self.per_image.add(batch.ids, colour)
        else:
            self.sums += colour.sum(0)
            self.n += len(batch)

    def merge(self, other: "ColourSum") -> None:
        if self.per_image is not None and other.per_image is not None:
            self.per_image.extend(other.per_image)
        else:
            self.sums += other.sums.to(self.device)
            self.n += other.n

    def state_dict(self) -> dict:
        if self.per_image is not None:
            return {"per_image": self.per_image.state_dict()}
        return {"sums": self.sums.cpu(), "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        if "per_image" in state:
            self.per_image = _PerImage()
            self.per_image.load_state_dict(state["per_image"])
        else:
            self.sums, self.n = state["sums"].to(self.device), int(state["n"])

    def result(self) -> tuple[torch.Tensor, int]:
        """(Σ per channel, images counted)."""
        if self.per_image is None:
            return self.sums, self.n
        ids, rows = self.per_image.unique()
        return (rows.sum(0).to(self.device) if len(ids) else torch.zeros(3, dtype=torch.int64, device=self.device),
                len(ids))


class ErrorLog:
    """The images that could not be read: (image id, message), each image once."""

    layer = None

    def __init__(self):
        self.errors: set[tuple[int, str]] = set()

    def update(self, batch: Batch, output=None) -> None:
        self.errors.update((int(i), str(e)) for i, e in batch.errors)

    def merge(self, other: "ErrorLog") -> None:
        self.errors |= other.errors

    def state_dict(self) -> dict:
        return {"errors": [[i, e] for i, e in sorted(self.errors)]}

    def load_state_dict(self, state: dict) -> None:
        self.errors = {(int(i), str(e)) for i, e in state["errors"]}

    def result(self) -> list[tuple[int, str]]:
        return sorted(self.errors)


class ScanState:
    """Named reducers updated together; ``state["top:layer4.1.conv2"]``, ``state["colour"]``, …"""

    def __init__(self, reducers: dict[str, Reducer]):
        self.reducers = reducers

    def __getitem__(self, name: str) -> Reducer:
        return self.reducers[name]

    @property
    def layers(self) -> list[str]:
        """The layers some reducer reads, in first-use order."""
        return list(dict.fromkeys(r.layer for r in self.reducers.values() if r.layer is not None))

    def update_layer(self, batch: Batch, layer: str, output: torch.Tensor) -> None:
        for r in self.reducers.values():
            if r.layer == layer:
                r.update(batch, output)

    def update_batch(self, batch: Batch) -> None:
        for r in self.reducers.values():
            if r.layer is None:
                r.update(batch, None)
        # Every layer of the batch is in: the layers' top-N buffers fold together (runningstats.TopKGroup).
        for group in {id(r.group): r.group for r in self.tops().values() if r.group is not None}.values():
            group.end_batch()

    def merge(self, other: "ScanState") -> None:
        if other.reducers.keys() != self.reducers.keys():
            raise ValueError(f"cannot merge scan states with reducers {sorted(other.reducers)} "
                             f"into {sorted(self.reducers)}")
        for name, r in self.reducers.items():
            r.merge(other.reducers[name])

    def state_dict(self) -> dict:
        return {name: r.state_dict() for name, r in self.reducers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, r in self.reducers.items():
            r.load_state_dict(state[name])

    # What the stages after the scan read.
    def tops(self) -> dict[str, TopImages]:
        return {r.layer: r for r in self.reducers.values() if isinstance(r, TopImages)}

    def image_activations(self) -> dict[str, ImageActivations]:
        return {r.layer: r for r in self.reducers.values() if isinstance(r, ImageActivations)}

    @property
    def n_seen(self) -> int:
        return self["colour"].result()[1]

    @property
    def errors(self) -> list[tuple[int, str]]:
        return self["errors"].result()

    def mean_colour(self, image_size: int) -> torch.Tensor:
        """The data set's mean colour in [0, 1], (3,)."""
        sums, n = self["colour"].result()
        return (sums.double() / (255.0 * image_size ** 2 * max(1, n))).float()


def scan_state(layers: list[str], top_n: int, images: LabelledImages, hierarchy_layer: str,
               device: torch.device | str = "cpu", per_image: bool = False, chunk: int = 64,
               extra: dict[str, Reducer] | None = None, keep_activations: int | None = 0) -> ScanState:
    """The scan's reducers: one ``TopImages`` per layer, the class means of ``hierarchy_layer``, the
    colour sum and image count, the unreadable images, and with ``keep_activations`` (K, None: all)
    one ``ImageActivations`` per layer; ``extra`` adds more."""
    class_index = {c: i for i, c in enumerate(images.classes)}
    label_ids = torch.tensor([class_index[label] for label in images.labels], dtype=torch.int64, device=device)
    group = TopKGroup()
    reducers: dict[str, Reducer] = {f"top:{name}": TopImages(name, top_n, device, group) for name in layers}
    reducers["class_means"] = ClassMeans(hierarchy_layer, label_ids, len(class_index), device, per_image, chunk)
    reducers["colour"] = ColourSum(device, per_image)
    reducers["errors"] = ErrorLog()
    if keep_activations != 0:
        reducers.update({f"acts:{name}": ImageActivations(name, keep_activations, device) for name in layers})
    reducers.update(extra or {})
    return ScanState(reducers)


class Checkpoint:
    """A scan state on disk, written atomically, valid only for the same run (fingerprint).

    ``key`` (see ``run_key``) is saved beside the fingerprint, so a checkpoint that does not fit
    says what differs.
    """

    def __init__(self, path: Path, fingerprint: str, key: dict | None = None):
        self.path, self.fingerprint, self.key = path, fingerprint, key

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            warnings.warn(f"ignoring checkpoint {self.path} and scanning from the start: it was written with "
                          f"{differences(state.get('key'), self.key)}", stacklevel=2)
            return None
        return state

    def save(self, state: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"fingerprint": self.fingerprint, "key": self.key, **state}, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# What each part of a run key is, for the message when a checkpoint does not fit.
KEY_NAMES = {"architecture": "another architecture", "source": "another kind of model",
             "weights": "other model weights (their content differs)", "normalisation": "another input normalisation",
             "layers": "other layers", "data": "another data set (paths or labels differ)", "top_n": "another --top-n",
             "image_size": "another --image-size", "hierarchy_layer": "another --hierarchy-layer",
             "autocast": "another --autocast", "keep_activations": "another --keep-activations"}


def differences(saved: dict | None, current: dict | None) -> str:
    """``other model weights (...), another --top-n`` for two run keys."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return "other settings (written by an older version)"
    names = [KEY_NAMES.get(k, k) for k in current if saved.get(k) != current[k]]
    return ", ".join(names) or "other settings"


def run_key(model, layers: list[str], images: LabelledImages, options) -> dict:
    """What must match for a checkpoint or shard to join a run (not batch size or device: results do
    not depend on them). The weights count by content, not by file name."""
    return {"architecture": model.architecture, "source": model.source, "weights": weights_digest(model.module),
            "normalisation": [list(model.mean), list(model.std)], "layers": list(layers),
            "data": images.fingerprint(), "top_n": options.top_n, "image_size": options.image_size,
            "hierarchy_layer": options.hierarchy_layer, "autocast": options.autocast,
            "keep_activations": options.keep_activations}


def fingerprint_of(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def run_fingerprint(model, layers: list[str], images: LabelledImages, options) -> str:
    return fingerprint_of(run_key(model, layers, images, options))


def record(network: Network, images: LabelledImages, state: ScanState, options, ids: list[int] | None = None,
           checkpoint: Checkpoint | None = None) -> ScanState:
    """The streaming pass: every image of ``ids`` (default all) through the network, folded into
    ``state``. With a checkpoint the state is saved every ``options.checkpoint_every`` batches and a
    saved one is resumed. Memory is O(neurons × N + classes × channels)."""
    todo = list(range(len(images))) if ids is None else list(ids)
    done = 0  # positions of `todo` already scanned
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        state.load_state_dict(saved["scan"])
        done = int(saved["done"])
    batches = image_batches(images, todo[done:], network.device, options.image_size, options.batch_size,
                            options.resolved_workers(), options.decode)
    for step, batch in enumerate(network_pass(network, batches, state.layers, state.update_layer, desc="scan",
                                              total=len(todo), initial=done, progress=options.progress), start=1):
        state.update_batch(batch)
        done += batch.size
        if checkpoint is not None and options.checkpoint_every and step % options.checkpoint_every == 0:
            checkpoint.save({"done": done, "scan": state.state_dict()})
    if checkpoint is not None:  # a run killed later (crops, indexes, load) resumes after the scan
        checkpoint.save({"done": done, "scan": state.state_dict()})
    if state.n_seen == 0 and not (ids is not None and not todo):
        first = state.errors[0][1] if state.errors else "none"
        raise UsageError(f"none of the {len(todo)} images could be read; first error: {first}")
    return state
