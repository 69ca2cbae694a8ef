"""ICA visualisation of Sadeghi §2.2 (docs/science.md §7): independent spatial components of a neuron's top crops.

Pixels are the samples and crops the mixtures, so each component is an image. FastICA
(symmetric, log-cosh) runs batched over many neurons at once, on the GPU when present.
"""
from __future__ import annotations

import torch

MODES = ("gray", "red", "green", "blue")
LUMA = (0.299, 0.587, 0.114)


def fast_ica(x: torch.Tensor, k: int, iterations: int = 200, tol: float = 1e-5, seed: int = 0) -> torch.Tensor:
    """Independent components of a batch: ``x`` (B, pixels, mixtures) -> sources (B, pixels, k), k <= mixtures."""
    b, p, n = x.shape
    k = min(k, n)
    x = x.double()
    x = x - x.mean(1, keepdim=True)
    cov = x.transpose(1, 2) @ x / p                                   # (B, n, n)
    values, vectors = torch.linalg.eigh(cov)
    values, vectors = values[:, -k:], vectors[:, :, -k:]              # top k
    scale = values.clamp(min=values[:, -1:].clamp(min=1e-30) * 1e-10).rsqrt()
    z = x @ (vectors * scale.unsqueeze(1))                            # (B, p, k), white
    g = torch.Generator().manual_seed(seed)
    w = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64))[0].to(x.device).expand(b, k, k)  # host: seeded on the CPU for the same draw anywhere

    def decorrelate(m):
        e, v = torch.linalg.eigh(m @ m.transpose(1, 2))
        return v @ torch.diag_embed(e.clamp(min=1e-30).rsqrt()) @ v.transpose(1, 2) @ m

    w = decorrelate(w)
    done = torch.zeros(b, dtype=torch.bool, device=x.device)
    for _ in range(iterations):
        y = torch.tanh(z @ w.transpose(1, 2))                         # (B, p, k)
        new = decorrelate(y.transpose(1, 2) @ z / p - (1 - y * y).mean(1).unsqueeze(2) * w)
        # A converged neuron keeps its unmixing, so a result never depends on its batch-mates.
        converged = ((new * w).sum(2).abs() - 1).abs().amax(1) < tol
        w = torch.where(done.view(b, 1, 1), w, new)
        done |= converged
        if done.all():
            break
    s = z @ w.transpose(1, 2)
    # Sign is arbitrary: show each component with its heavier tail positive.
    skew = (s ** 3).mean(1, keepdim=True)
    return s * torch.where(skew < 0, -1.0, 1.0)


def to_uint8(components: torch.Tensor) -> torch.Tensor:
    """Rescale each component (…, pixels) to 0..255."""
    lo = components.amin(-1, keepdim=True)
    hi = components.amax(-1, keepdim=True)
    return ((components - lo) / (hi - lo).clamp(min=1e-12) * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def neuron_components(crops: torch.Tensor, counts: torch.Tensor, k: int = 8) -> dict[str, list[torch.Tensor]]:
    """Per mode, per neuron, its components as uint8 (k_i, s, s).

    ``crops``: (B, N, 3, s, s) with the first ``counts[i]`` crops of neuron i valid. Neurons with
    fewer than two crops get none; fewer than k crops give fewer components.
    """
    b, _, _, s, _ = crops.shape
    luma = torch.tensor(LUMA, dtype=crops.dtype, device=crops.device).view(1, 1, 3, 1, 1)
    out = {m: [torch.empty(0, s, s, dtype=torch.uint8)] * b for m in MODES}  # host: empty PNG sources
    for n in sorted(set(counts.tolist())):
        if n < 2:
            continue
        group = (counts == n).nonzero().flatten()
        c = crops[group, :n]                                          # (G, n, 3, s, s)
        planes = {"gray": (c * luma).sum(2), "red": c[:, :, 0], "green": c[:, :, 1], "blue": c[:, :, 2]}
        for mode, plane in planes.items():
            x = plane.flatten(2).transpose(1, 2)                      # (G, pixels, n)
            comps = to_uint8(fast_ica(x, min(k, n - 1)).transpose(1, 2)).view(len(group), -1, s, s).cpu()
            for j, i in enumerate(group.tolist()):
                out[mode][i] = comps[j]
    return out
