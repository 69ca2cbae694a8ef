"""grad-CAM (Selvaraju et al.; What do CNN neurons learn §2, docs/science.md §11): where in an image a
class logit, or one channel of a layer, draws its evidence from, seen at a chosen layer.

CAM = ReLU(Σ_k w_k A_k) with w_k the spatial mean of ∂score/∂A_k, upsampled to the input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import UsageError
from .taps import is_script


@dataclass
class Target:
    """A logit (``layer`` None: the network's output) or a channel of ``layer`` (its spatial maximum)."""

    index: int | None = None  # None: the predicted class, item by item
    layer: str | None = None


def grad_cam(model: nn.Module, images: torch.Tensor, at: str, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """Heat maps (B, H, W) in [0, 1] (0 where nothing counts) and the target's score (B,) for
    normalised ``images`` (B, 3, H, W)."""
    if is_script(model):
        raise UsageError("grad-CAM needs a Python nn.Module (TorchScript runs no hooks); "
                         "give the architecture with --weights instead")
    modules = dict(model.named_modules())
    for name in filter(None, (at, target.layer)):
        if name not in modules:
            raise UsageError(f"no layer {name!r}; layers: {', '.join(n for n in modules if n)[:800]}")
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_module, _inputs, out):
            seen[name] = out
        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in {at, target.layer} if n]
    try:
        model.eval()
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)  # so A_k has a gradient even with frozen weights
            output = model(x)
            activation = seen[at]
            if target.layer is None:
                scores = output if output.dim() == 2 else output.flatten(1)
                index = scores.argmax(1) if target.index is None else torch.full((len(x),), target.index)  # host: moved to the scores' device below
            else:
                scores = seen[target.layer].flatten(2).amax(2) if seen[target.layer].dim() == 4 else seen[target.layer]
                index = torch.full((len(x),), 0 if target.index is None else target.index)  # host: moved below
            if int(index.max()) >= scores.shape[1]:
                raise UsageError(f"target {int(index.max())} out of range: the target has {scores.shape[1]} outputs")
            score = scores[torch.arange(len(x), device=scores.device), index.to(scores.device)]
            (grads,) = torch.autograd.grad(score.sum(), activation)
    finally:
        for h in handles:
            h.remove()
    if activation.dim() != 4:
        raise UsageError(f"grad-CAM needs a layer with a spatial map; {at} gives {tuple(activation.shape)}")
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp(min=torch.finfo(cam.dtype).tiny).view(-1, 1, 1)
    return (cam / peak).detach(), score.detach()


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """``image`` (H, W, 3) uint8 under the heat map (H, W) in [0, 1], coloured with 'inferno'."""
    from matplotlib import colormaps

    colour = colormaps["inferno"](heat)[..., :3]
    mixed = (1 - opacity) * image.astype(np.float64) / 255 + opacity * colour
    return (mixed * 255 + 0.5).clip(0, 255).astype(np.uint8)
