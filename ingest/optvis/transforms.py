"""Random transforms applied to the image before each step: the result must stay a strong
stimulus when shifted, turned or rescaled a little, which suppresses adversarial noise.

A transform is called as ``t(images, u)`` where ``u`` is a (batch, t.n_random) tensor of uniform
numbers in [0, 1) drawn from each item's own generator.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Jitter:
    """Shift by up to ``pixels`` in x and y."""

    n_random = 2

    def __init__(self, pixels: int = 8):
        self.pixels = pixels

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        shift = (u * 2 - 1) * self.pixels * 2 / x.shape[-1]  # normalised coordinates
        theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, :, 2] = shift
        return _affine(x, theta)


class Rotate:
    """Rotate by up to ± ``degrees``."""

    n_random = 1

    def __init__(self, degrees: float = 5.0):
        self.degrees = degrees

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        angle = (u[:, 0] * 2 - 1) * math.radians(self.degrees)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        return _affine(x, theta)


class Scale:
    """Zoom by a factor drawn from [low, high]."""

    n_random = 1

    def __init__(self, low: float = 0.95, high: float = 1.05):
        self.low, self.high = low, high

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        factor = self.low + u[:, 0] * (self.high - self.low)
        theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / factor
        return _affine(x, theta)


class Blur:
    """Gaussian blur of standard deviation ``sigma`` px (deterministic)."""

    n_random = 0

    def __init__(self, sigma: float = 0.5):
        self.sigma = sigma
        radius = max(1, math.ceil(2 * sigma))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)  # host: moved to the input's device when applied
        k = torch.exp(-t * t / (2 * sigma * sigma))
        self.kernel = k / k.sum()

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if self.sigma <= 0:
            return x
        k = self.kernel.to(x.device)
        r = len(k) // 2
        x = F.pad(x, (r, r, r, r), mode="reflect")
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


class Compose:
    """Apply transforms in order, giving each its own columns of ``u``."""

    def __init__(self, transforms: list):
        self.transforms = list(transforms)
        self.n_random = sum(t.n_random for t in self.transforms)

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        col = 0
        for t in self.transforms:
            x = t(x, u[:, col:col + t.n_random])
            col += t.n_random
        return x


def standard_transforms(size: int, jitter: int | None = None, degrees: float = 5.0, scale: float = 0.05,
                        blur: float = 0.5) -> Compose:
    """Jitter (default size/16 px), rotation, scale and blur: the regularisers of docs/science.md §11."""
    jitter = max(1, size // 16) if jitter is None else jitter
    parts = [Jitter(jitter)] * (jitter > 0) + [Rotate(degrees)] * (degrees > 0) + \
        [Scale(1 - scale, 1 + scale)] * (scale > 0) + [Blur(blur)] * (blur > 0)
    return Compose(parts)
