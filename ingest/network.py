"""The one pass driver: every network pass (scan, crops and colour drop, NF self-activation, filter
tree, ablation) runs its batches through ``network_pass`` on a ``Network``.

A ``Network`` is a model made ready for passes: on its device, in eval mode, with its input
normalisation and optional lower precision. Every tensor a pass makes lives on ``network.device``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch
from tqdm import tqdm

from .data import DECODERS, LabelledImages, decode_jpegs, loader
from .errors import UsageError
from .models import LoadedModel
from .taps import LayerTap


def default_device(device: str | torch.device | None = None) -> torch.device:
    """The device asked for, or cuda when torch sees one; a missing CUDA is a usage error."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device")
    return device


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's weights live (CPU for a module without any)."""
    return next((t.device for t in [*module.parameters(), *module.buffers()]), torch.device("cpu"))


class Network:
    """``model`` on ``device`` in eval mode; ``inputs`` normalises a [0, 1] batch as the model expects."""

    def __init__(self, model: LoadedModel, device: str | torch.device | None = None,
                 autocast: str | None = None, channels_last: bool = False):
        if autocast not in (None, "bfloat16", "float16"):
            raise UsageError(f"--autocast must be bfloat16 or float16, not {autocast!r}")
        self.model = model
        self.device = default_device(device)
        self.module = model.module.to(self.device).eval()
        if channels_last:  # faster convolutions on tensor cores; the same numbers up to rounding
            self.module = self.module.to(memory_format=torch.channels_last)
        self.channels_last, self.autocast = channels_last, autocast
        self.mean, self.std = normaliser(model, self.device)

    def inputs(self, images01: torch.Tensor) -> torch.Tensor:
        x = (images01.to(self.device) - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def precision(self):
        """Autocast for the forward pass only; reducers get float32 (``TopK`` takes ``values.float()``)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, self.autocast))


def normaliser(model: LoadedModel, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) as (1, 3, 1, 1) tensors on ``device``; ``Network.inputs`` applies them."""
    return (torch.tensor(model.mean, device=device).view(1, 3, 1, 1),
            torch.tensor(model.std, device=device).view(1, 3, 1, 1))


@dataclass
class Batch:
    """Images of one step of a pass. ``pixels`` are uint8 (B, 3, S, S) as read, or None for synthetic
    inputs given as ``images01``; ``errors`` are the (image id, message) pairs the loader skipped."""

    ids: torch.Tensor                       # (B,) int64, on the device
    ids_cpu: torch.Tensor                   # the same, on the CPU (for indexing host-side plans)
    pixels: torch.Tensor | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)
    images01: torch.Tensor | None = None    # float in [0, 1]; made from pixels when not given

    def __post_init__(self):
        if self.images01 is None and self.pixels is not None:
            self.images01 = self.pixels.float().div_(255)

    def __len__(self) -> int:
        return len(self.ids_cpu)

    @property
    def size(self) -> int:
        """Images this step accounts for, read or skipped."""
        return len(self.ids_cpu) + len(self.errors)


def resolve_decode(decode: str, device: torch.device) -> str:
    """``auto``: JPEGs decoded on the device when it is a GPU, else by PIL in the loader workers."""
    if decode not in DECODERS:
        raise UsageError(f"--decode must be one of {', '.join(DECODERS)}, not {decode!r}")
    return ("gpu" if device.type == "cuda" else "cpu") if decode == "auto" else decode


def image_batches(images: LabelledImages, ids: list[int], device: torch.device, image_size: int,
                  batch_size: int, workers: int, decode: str = "auto") -> Iterator[Batch]:
    """Batches of the images ``ids`` as the model sees them, ids ascending. Loader workers decode with
    PIL, or (decode ``gpu``) only read JPEG files, which are then decoded on ``device`` in one call."""
    on_device = resolve_decode(decode, device) == "gpu"
    batches = loader(images, image_size, batch_size, workers, ids, pin_memory=device.type == "cuda",
                     jpeg_bytes=on_device)
    for loaded in batches:
        pixels, ids_cpu, errors = loaded[:3]
        pixels = None if pixels is None else pixels.to(device, non_blocking=True)
        if on_device and loaded[3]:
            decoded, failed = decode_jpegs(loaded[3], images, image_size, device)
            errors = sorted(errors + failed)
            parts = ([] if pixels is None else list(zip(ids_cpu.tolist(), pixels))) + decoded
            parts.sort(key=lambda p: p[0])
            ids_cpu = torch.tensor([i for i, _ in parts], dtype=torch.int64)  # host: ids for host-side plans
            pixels = torch.stack([p for _, p in parts]) if parts else None
        yield Batch(ids_cpu.to(device, non_blocking=True), ids_cpu, pixels, errors)


def network_pass(network: Network, batches: Iterable[Batch], layers: list[str] | None,
                 on_output: Callable[[Batch, str | None, torch.Tensor], None] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 desc: str = "pass", total: int | None = None, initial: int = 0,
                 progress: bool = True) -> Iterator[Batch]:
    """Run every batch through the network and yield it once ``on_output(batch, layer, output)`` was
    called for each of ``layers`` (``layers=None``: the whole network, ``layer`` None, output its
    result). ``transform`` changes the [0, 1] images before normalisation (a gray copy, say).
    Batches with no readable image are yielded without a forward pass, so callers see their errors.
    """
    tap = LayerTap(network.module, layers) if layers else contextlib.nullcontext()
    with tap, torch.inference_mode(), tqdm(total=total, initial=initial, desc=desc, unit="img",
                                            disable=not progress) as bar:
        for batch in batches:
            if len(batch) and (layers or layers is None):
                x = batch.images01 if transform is None else transform(batch.images01)
                with network.precision():
                    if layers:
                        tap.run(network.inputs(x), lambda name, out: on_output(batch, name, out))
                    else:
                        on_output(batch, None, network.module(network.inputs(x)))
            yield batch
            bar.update(batch.size)
