"""NF self-activation (docs/science.md §12, the ICLR draft's Fig. 4): how strongly a neuron answers its own
Neuron Feature, relative to its strongest answer on the data set (a_max).

The NF, scaled to the receptive-field size, is pasted at the receptive field of the centre
position of an image filled with the data set's mean colour; the activation is read at that
centre position. Near 1: the average of the top crops is itself a top stimulus; near 0: the
neuron answers something the average washes out (several facets, or a precise phase).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .receptive_field import ReceptiveField
from .network import Batch, Network, network_pass
from .record import as_maps


def probe_images(nf: torch.Tensor, rf: ReceptiveField, out_height: int, out_width: int, image_size: int,
                 fill: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(C, 3, S, S) images in [0, 1], each with one NF at the centre position's field; and that position."""
    y, x = out_height // 2, out_width // 2
    top, left, bottom, right = rf.box(y, x)
    patch = nf if nf.shape[-1] == rf.size else F.interpolate(nf, size=(rf.size, rf.size), mode="bilinear",
                                                              align_corners=False).clamp(0, 1)
    images = fill.view(1, 3, 1, 1).expand(nf.shape[0], 3, image_size, image_size).clone()
    t, l = max(top, 0), max(left, 0)
    b, r = min(bottom, image_size), min(right, image_size)
    if b > t and r > l:
        images[:, :, t:b, l:r] = patch[:, :, t - top:b - top, l - left:r - left]
    return images, y, x


def nf_self_activation(network: Network, layer: str, nf: torch.Tensor, has_nf: np.ndarray, a_max: np.ndarray,
                       rf: ReceptiveField, out_height: int, out_width: int, image_size: int, fill: torch.Tensor,
                       batch_size: int = 64) -> np.ndarray:
    """(C,) activation on the own NF / a_max; NaN where there is no NF (dead neurons)."""
    device = network.device
    out = np.full(nf.shape[0], np.nan)
    units = np.flatnonzero(has_nf)
    y, x = out_height // 2, out_width // 2

    def probes():
        for start in range(0, len(units), batch_size):
            chunk = torch.as_tensor(units[start:start + batch_size])  # host: unit numbers index host arrays too
            images, _, _ = probe_images(nf[chunk.to(nf.device)].to(device).float(), rf, out_height, out_width,
                                        image_size, fill.to(device))
            yield Batch(chunk.to(device), chunk, images01=images)

    def read(batch: Batch, _layer, output: torch.Tensor) -> None:
        act = as_maps(output, layer)
        values = act[torch.arange(len(batch), device=act.device), batch.ids,
                     min(y, act.shape[2] - 1), min(x, act.shape[3] - 1)]
        chunk = batch.ids_cpu.numpy()
        out[chunk] = values.double().cpu().numpy() / a_max[chunk]

    for _ in network_pass(network, probes(), [layer], read, progress=False):
        pass
    return out
