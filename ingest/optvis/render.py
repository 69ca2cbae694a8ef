"""The optimisation loop: gradient ascent on a batch of images, one objective per item."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..taps import LayerTap
from .objectives import Objective, l2_penalty, total_variation
from .param import FourierImage, PixelImage
from .transforms import Compose, standard_transforms

PARAMETERISATIONS = {"fourier": FourierImage, "pixel": PixelImage}


@dataclass
class RenderResult:
    images: torch.Tensor   # (B, 3, size, size) in [0, 1], on the CPU
    values: torch.Tensor   # (B,) the objective on the final image, untransformed
    history: torch.Tensor  # (steps, B) the objective at each step, on the transformed image
    start: torch.Tensor    # (B,) the objective on the initial image, untransformed


@contextmanager
def _frozen(model: nn.Module):
    """No gradients for the weights while optimising the input (and as they were afterwards)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _layer_output(tap: LayerTap, x: torch.Tensor) -> torch.Tensor:
    got = []
    tap.run(x, lambda _name, out: got.append(out))
    return got[0]


def render(model: nn.Module, objective: Objective, seeds: list[int], normalise: Callable[[torch.Tensor], torch.Tensor],
           size: int = 128, steps: int = 256, lr: float = 0.05, param: str = "fourier",
           transforms: Compose | None = None, l2: float = 0.0, tv: float = 0.0, device="cpu") -> RenderResult:
    """Maximise ``objective`` item by item; item i starts from, and jitters with, generator ``seeds[i]``.

    The loss is −objective + l2·‖x − ½‖² + tv·TV(x), summed over items so that items stay
    independent (the network must be in eval mode: no statistics shared across the batch).
    """
    if len(seeds) != len(objective.targets):
        raise ValueError("one seed per objective target")
    if param not in PARAMETERISATIONS:
        raise ValueError(f"param must be one of {', '.join(PARAMETERISATIONS)}, not {param!r}")
    transforms = transforms if transforms is not None else standard_transforms(size)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    image = PARAMETERISATIONS[param](generators, size, device)
    # Every step's random numbers, drawn up front from each item's generator.
    schedule = torch.stack([torch.rand(steps, max(1, transforms.n_random), generator=g) for g in generators], 1)  # host: seeded draw, then moved
    schedule = schedule.to(device)
    optimiser = torch.optim.Adam(image.parameters(), lr=lr)
    model = model.eval()
    history = []
    with _frozen(model), LayerTap(model, [objective.layer]) as tap:
        with torch.no_grad():
            start = objective(_layer_output(tap, normalise(image()))).float().cpu()
        for step in range(steps):
            optimiser.zero_grad(set_to_none=True)
            x = image()
            value = objective(_layer_output(tap, normalise(transforms(x, schedule[step]))))
            loss = -value.sum()
            if l2:
                loss = loss + l2 * l2_penalty(x).sum()
            if tv:
                loss = loss + tv * total_variation(x).sum()
            loss.backward()
            optimiser.step()
            history.append(value.detach())
        with torch.no_grad():
            final = image()
            values = objective(_layer_output(tap, normalise(final))).float().cpu()
    return RenderResult(final.detach().cpu(), values, torch.stack(history).float().cpu(), start)
