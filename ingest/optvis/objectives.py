"""What each batch item maximises, read from one layer's output (B, C[, H, W]).

An objective returns one value per item: item i maximises ``targets[i]`` of the layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Objective:
    kind: str  # channel | unit | logit
    layer: str
    targets: list[int]
    value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (output, targets) -> (B,)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        index = torch.tensor(self.targets, device=output.device)
        return self.value(output, index)


def _pick(output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return output[torch.arange(len(index), device=output.device), index]


def channel(layer: str, channels: list[int]) -> Objective:
    """The mean of each item's channel map."""
    return Objective("channel", layer, list(channels), lambda out, idx: _pick(out.flatten(2).mean(2), idx)
                     if out.dim() == 4 else _pick(out, idx))


def unit(layer: str, channels: list[int]) -> Objective:
    """The single unit at the centre of each item's channel map."""
    def centre(out, idx):
        if out.dim() == 2:
            return _pick(out, idx)
        return _pick(out[:, :, out.shape[2] // 2, out.shape[3] // 2], idx)
    return Objective("unit", layer, list(channels), centre)


def logit(layer: str, classes: list[int]) -> Objective:
    """A class logit of a (B, classes) output such as the final linear layer."""
    def pick(out, idx):
        if out.dim() != 2:
            raise ValueError(f"a logit objective needs a (batch, classes) layer; {layer} gives {tuple(out.shape)}")
        return _pick(out, idx)
    return Objective("logit", layer, list(classes), pick)


def l2_penalty(images: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from mid-gray, per item."""
    return ((images - 0.5) ** 2).flatten(1).mean(1)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, per item."""
    dy = (images[:, :, 1:] - images[:, :, :-1]).abs().flatten(1).mean(1)
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dx + dy
