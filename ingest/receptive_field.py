"""Theoretical receptive fields of any architecture, by gradient (docs/science.md §2).

A copy of the network is made linear and positive: activations and normalisations become
identities, max-pools become average pools, every weight becomes a positive constant. The
gradient of one output position w.r.t. the input is then non-zero exactly on the positions
that can influence it, so its bounding box is the theoretical receptive field, whatever the
wiring (residual additions, depthwise or dilated convolutions, "same" padding).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .network import module_device
from .taps import LayerTap, is_script

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
                nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus,
                nn.Dropout, nn.Dropout2d)


@dataclass(frozen=True)
class ReceptiveField:
    """Output position (y, x) sees input rows ``offset + y*stride .. + size - 1`` (and likewise columns)."""

    size: int
    stride: int
    offset_y: int
    offset_x: int

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), exclusive bottom/right, in input pixels; may leave the image."""
        top, left = self.offset_y + y * self.stride, self.offset_x + x * self.stride
        return top, left, top + self.size, left + self.size


def _linearised(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():  # deepcopy of a ScriptModule touches non-leaf .grad
        warnings.simplefilter("ignore", UserWarning)
        probe = copy.deepcopy(model).float().eval()
    if is_script(probe):
        # Modules of a TorchScript graph cannot be swapped. Positive weights on a positive input
        # keep every ReLU-like activation open; norms become identities through their buffers;
        # LayerTap turns max-pools into average pools in the graph.
        _make_positive(probe)
        return probe

    def replace(parent: nn.Module):
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                new = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode)
                if child.dilation not in (1, (1, 1)):
                    raise ValueError(f"dilated max-pool {name} is not supported for receptive fields")
            elif isinstance(child, nn.AdaptiveMaxPool2d):
                new = nn.AdaptiveAvgPool2d(child.output_size)
            elif isinstance(child, _NORMS + _ACTIVATIONS):
                new = nn.Identity()
            else:
                replace(child)
                continue
            setattr(parent, name, new)

    replace(probe)
    _make_positive(probe)
    return probe


def _make_positive(probe: nn.Module) -> None:
    with torch.no_grad():
        for module in probe.modules():
            for pname, p in module.named_parameters(recurse=False):
                if pname == "bias":
                    p.zero_()
                elif p.dim() > 1:
                    p.fill_(1.0 / max(1, p[0].numel()))
                else:
                    p.fill_(1.0)
            for bname, b in module.named_buffers(recurse=False):
                if bname == "running_mean":
                    b.zero_()
                elif bname == "running_var":
                    b.fill_(1.0)


def receptive_fields(model: nn.Module, layers: list[str], image_size: int,
                     max_probe: int = 4096) -> dict[str, ReceptiveField]:
    """Receptive field of every named layer, measured at the centre of a probe image.

    The probe grows until the centre field lies wholly inside it, so fields larger than the
    model's image size are measured unclipped.
    """
    probe = _linearised(model)
    device = module_device(probe)
    result: dict[str, ReceptiveField] = {}
    size = image_size
    pending = list(layers)
    while pending:
        outputs: dict[str, torch.Tensor] = {}
        x = torch.ones(1, 3, size, size, device=device, requires_grad=True)
        with LayerTap(probe, pending, average_pools=True) as tap:
            tap.run(x, outputs.__setitem__)
        retry = []
        for name in pending:
            out = outputs[name]
            h, w = out.shape[-2:]
            cy, cx = h // 2, w // 2

            def box(py: int, px: int) -> tuple[int, int, int, int]:
                (g,) = torch.autograd.grad(out[0, :, py, px].sum(), x, retain_graph=True)
                nz = g[0].abs().sum(0) > 0
                rows = nz.any(1).nonzero().flatten()
                cols = nz.any(0).nonzero().flatten()
                return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

            top, bottom, left, right = box(cy, cx)
            if (top == 0 or left == 0 or bottom == size or right == size) and size < max_probe:
                retry.append(name)  # clipped: the next, larger probe measures it (and its neighbour)
                continue
            if h > 1:
                stride = box(min(cy + 1, h - 1), min(cx + 1, w - 1))[0] - top
            else:  # a single position: the stride is the downsampling factor
                stride = max(1, round(size / h))
            rf_size = max(bottom - top, right - left)
            result[name] = ReceptiveField(rf_size, stride, top - cy * stride, left - cx * stride)
        pending = retry
        size *= 2
        del outputs, x
    return {n: result[n] for n in layers}
