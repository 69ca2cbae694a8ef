"""The device side of matching by activations (`neurocat compare --activations --device cuda`).

The formulas live in ``catalog.compare`` (NumPy; that layer imports no torch); every large product
there goes through one ``matmul``, which this module runs on a torch device."""
from __future__ import annotations

import numpy as np
import torch

from .network import default_device


def device_matmul(device: str | torch.device | None = None):
    """``a @ b`` of two NumPy arrays computed on ``device`` (default: cuda when torch sees one); None on
    the CPU, where NumPy's BLAS is as fast and skips the copies."""
    device = default_device(device)
    if device.type == "cpu":
        return None

    def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device, non_blocking=True)  # host: from NumPy, moved at once
        b = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)).to(device, non_blocking=True)  # host: from NumPy, moved at once
        return (a @ b).cpu().numpy()

    return matmul
