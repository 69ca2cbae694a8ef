"""Image parameterisations: a batch of images in [0, 1] as a function of free parameters.

Each item's initial parameters come from its own generator (see ``render``), so batching does
not change the picture.
"""
from __future__ import annotations

import torch

from ..selectivity import OPPONENT


def _initial(generators: list[torch.Generator], shape: tuple[int, ...], scale: float, device) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g) * scale for g in generators]).to(device)  # host: seeded draw, then moved


class PixelImage:
    """One free value per pixel and channel, squashed by a sigmoid."""

    def __init__(self, generators: list[torch.Generator], size: int, device="cpu", init_scale: float = 0.01):
        self.logits = _initial(generators, (3, size, size), init_scale, device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.logits]

    def __call__(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


class FourierImage:
    """A spectrum scaled by 1/frequency^decay in the opponent colour space (docs/science.md §4's OPP axes).

    Low frequencies and colour-opponent directions get comparable step sizes, so the optimiser
    does not fill the image with high-frequency, correlated-colour noise.
    """

    def __init__(self, generators: list[torch.Generator], size: int, device="cpu", decay: float = 1.0,
                 init_scale: float = 0.01):
        fy = torch.fft.fftfreq(size).view(-1, 1)
        fx = torch.fft.rfftfreq(size).view(1, -1)
        freq = (fx * fx + fy * fy).sqrt().clamp(min=1.0 / size)
        self.scale = (4.0 / freq ** decay).to(device) / size
        self.size = size
        self.spectrum = _initial(generators, (3, size, size // 2 + 1, 2), init_scale, device).requires_grad_(True)
        self.to_rgb = OPPONENT.float().to(device)  # orthonormal: its transpose maps OPP back to RGB

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def __call__(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        opp = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        rgb = torch.einsum("bohw,oc->bchw", opp, self.to_rgb)
        return torch.sigmoid(rgb * 4)
