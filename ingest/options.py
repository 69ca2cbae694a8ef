"""The settings of one ingest run, validated before anything is created."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .data import DECODERS
from .errors import UsageError
from .network import default_device

ENGINES = ("local", "ray")


@dataclass
class IngestOptions:
    top_n: int = 100            # top images kept per neuron (docs/science.md §1)
    batch_size: int = 64
    device: str | None = None   # default: cuda when available
    image_size: int = 224
    workers: int | None = None  # DataLoader workers; default from the CPU count
    min_rel: float = 0.7        # relative activation a crop needs to enter the NF (docs/science.md §3)
    nf_ranks: int = 100         # only the first nf_ranks top images can enter the NF (docs/science.md §3)
    nf_size: int = 96           # largest NF side in pixels; larger fields are shrunk (docs/science.md §2)
    gamma_th: float = 1.0       # th of γ (docs/science.md §5)
    color_threshold: float = 0.25
    hierarchy_layer: str | None = None  # default: the deepest chosen layer (docs/science.md §9)
    similarity_k: int | None = 10        # None: every pair
    checkpoint_every: int = 50           # batches between checkpoints of the scan (0: none)
    autocast: str | None = None          # scan in bfloat16 or float16 autocast (None: float32)
    channels_last: bool = False          # scan with channels-last memory format
    self_activation: bool | None = None  # the NF self-activation pass (one partial forward per live neuron);
                                         # None: on when the device is a GPU (see wants_self_activation)
    color_drop: bool | None = None       # the colour drop's gray pass over the top images (docs/science.md §13);
                                         # None: on when the device is a GPU (see wants_color_drop)
    decode: str = "auto"                 # JPEG decoding: auto (on the GPU when the device is one) | cpu | gpu
    engine: str = "local"                # local | ray
    address: str | None = None           # Ray cluster address (engine ray); default a local one
    gpus_per_worker: float = 0.0         # engine ray: GPUs per model actor
    gamma_null_draws: int = 1000         # Monte Carlo draws of γ's class-prior null (docs/science.md §22; 0: off)
    bootstrap: int = 200                 # bootstrap resamples for the intervals of α and γ (docs/science.md §22; 0: off)
    keep_activations: int | None = 2000  # per-image max and mean of the first K images (docs/science.md §23; 0: off, None: all)
    progress: bool = True

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.decode not in DECODERS:
            raise UsageError(f"--decode must be one of {', '.join(DECODERS)}, not {self.decode!r}")
        if self.autocast not in (None, "bfloat16", "float16"):
            raise UsageError(f"--autocast must be bfloat16 or float16, not {self.autocast!r}")
        for option, value in (("--gamma-null-draws", self.gamma_null_draws), ("--bootstrap", self.bootstrap)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{option} must be a whole number, 0 (off) or more, not {value!r}")
        k = self.keep_activations
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
            raise UsageError(f"--keep-activations must be a whole number, 0 (off) or more, or all; not {k!r}")
        if self.bootstrap == 1:
            raise UsageError("--bootstrap needs at least 2 resamples for an interval (0: off)")

    def resolved_device(self) -> torch.device:
        return default_device(self.device)

    def wants_self_activation(self) -> bool:
        """One forward pass per live neuron is a small cost next to a GPU scan, but on a CPU it outweighs the
        whole scan of a small set (a deep ResNet-18 layer: 60 ms per neuron), so by default only on a GPU."""
        return self._asked_or_on_gpu(self.self_activation)

    def wants_color_drop(self) -> bool:
        """The colour drop runs every top image through the network once more, in gray: next to a GPU scan
        that is cheap, but on a CPU and a small set the top images are nearly all images, so it costs
        about one more forward pass of the whole set. By default only on a GPU."""
        return self._asked_or_on_gpu(self.color_drop)

    def _asked_or_on_gpu(self, asked: bool | None) -> bool:
        """A pass the user switched on or off, else on only when the device is CUDA."""
        return asked if asked is not None else self.resolved_device().type == "cuda"

    def resolved_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return min(8, max(1, (os.cpu_count() or 2) // 2))


def keep_activations(text: str | int | None) -> int | None:
    """``--keep-activations``: a count of images, 0 (off) or ``all`` (None)."""
    if text is None or str(text).strip().lower() == "all":
        return None
    try:
        return int(str(text).strip())
    except ValueError:
        raise UsageError(f"--keep-activations must be a whole number, 0 (off) or more, or all; not {text!r}") from None


def hierarchy_layer(layer_names: list[str], options: IngestOptions) -> str:
    """The layer whose class means build the category hierarchy: the one asked for, else the deepest chosen."""
    return options.hierarchy_layer or layer_names[-1]
