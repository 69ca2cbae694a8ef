"""Receptive-field crops and the Neuron Feature (docs/science.md §2-3), in one pass over the top images.

Every layer's crops are gathered from each image while it is in memory, so an image is
decoded once however many neurons rank it. Per neuron we accumulate Σ w·I, Σ I and Σ I²
over the crops that enter the NF; the NF and the per-pixel σ for α follow from them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .receptive_field import ReceptiveField
from .significance import shrink_crops

# Crops are cut and summed in chunks: on a CPU small enough to stay in the caches between the gather
# and the sums; on a GPU large, so a layer takes few kernel launches.
CHUNK_BYTES = {"cpu": 4 << 20, "other": 256 << 20}


@dataclass
class CropPlan:
    """The crops of one layer that enter its Neuron Features, sorted by image id."""

    layer: str
    rf: ReceptiveField
    nf_size: int
    channels: int
    units: torch.Tensor      # (E,) neuron of each crop
    image_ids: torch.Tensor  # (E,) sorted
    tops: torch.Tensor       # (E,) receptive-field top row in the model's input
    lefts: torch.Tensor      # (E,)
    weights: torch.Tensor    # (E,) relative activation w
    positions: torch.Tensor | None = None  # (E,) flat position of the maximum in the layer's map


def plan_crops(layer: str, rf: ReceptiveField, out_width: int, values: torch.Tensor, image_ids: torch.Tensor,
               positions: torch.Tensor, min_rel: float, nf_ranks: int, nf_size: int) -> CropPlan:
    """Choose the crops of each live neuron with w >= min_rel among its first nf_ranks ranks."""
    a_max = values[:, :1]
    rel = values.clamp(min=0) / a_max.clamp(min=torch.finfo(values.dtype).tiny)
    ranks = torch.arange(values.shape[1], device=values.device).unsqueeze(0)
    use = (a_max > 0) & (image_ids >= 0) & (rel >= min_rel) & (ranks < nf_ranks)
    units = torch.arange(values.shape[0], device=values.device).unsqueeze(1).expand_as(values)[use]
    ids, pos, w = image_ids[use], positions[use].long(), rel[use]
    order = torch.argsort(ids, stable=True)
    ys, xs = pos // out_width, pos % out_width
    return CropPlan(layer, rf, min(rf.size, nf_size), values.shape[0], units[order].cpu(), ids[order].cpu(),
                    (rf.offset_y + ys * rf.stride)[order].cpu(), (rf.offset_x + xs * rf.stride)[order].cpu(),
                    w[order].cpu().float(), pos[order].cpu())


class NeuronFeatureAccumulator:
    """Σ w·crop, Σ crop, Σ crop² and the weights, per neuron of one layer."""

    def __init__(self, plan: CropPlan, device, sample_side: int = 0):
        s = plan.nf_size
        self.plan = plan
        self.weighted = torch.zeros(plan.channels, 3, s, s, device=device)
        self.total = torch.zeros_like(self.weighted)
        self.squares = torch.zeros_like(self.weighted)
        self.weight = torch.zeros(plan.channels, device=device)
        self.n_used = torch.zeros(plan.channels, dtype=torch.int64, device=device)
        # With sample_side > 0 every NF crop is also kept, shrunk to that side in 8 bits, for the
        # bootstrap of α (docs/science.md §22).
        side = min(sample_side, s)
        self.samples = (torch.zeros(len(plan.units), 3, side, side, dtype=torch.uint8, device=device)
                        if sample_side > 0 else None)
        self.sampled = torch.zeros(len(plan.units), dtype=torch.bool, device=device)  # crops actually cut
        self.units, self.weights = plan.units.to(device), plan.weights.to(device)  # the plan's columns, moved once

    def add(self, batch: torch.Tensor, batch_ids: torch.Tensor, fill: torch.Tensor) -> None:
        """Accumulate every planned crop whose image is in ``batch``."""
        p = self.plan
        for idx, crops in gather_crops(p, batch, batch_ids, fill):
            idx = idx.to(crops.device)
            units, w = self.units[idx], self.weights[idx]
            self.weighted.index_add_(0, units, crops * w.view(-1, 1, 1, 1))
            self.total.index_add_(0, units, crops)
            self.squares.index_add_(0, units, crops * crops)
            self.weight.index_add_(0, units, w)
            self.n_used.index_add_(0, units, torch.ones_like(units))
            if self.samples is not None:
                self.samples[idx] = shrink_crops(crops, self.samples.shape[-1])
                self.sampled[idx] = True

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(NF (C, 3, s, s), σ (C, s, s) mean over channels, n_used (C,)); NF is 0 where no crop was used."""
        n = self.n_used.clamp(min=1).view(-1, 1, 1, 1).float()
        nf = self.weighted / self.weight.clamp(min=1e-12).view(-1, 1, 1, 1)
        mean = self.total / n
        sigma = (self.squares / n - mean * mean).clamp(min=0).sqrt().mean(1)
        return nf.clamp(0, 1), sigma, self.n_used

    def crop_samples(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(crops (C, n, 3, r, r) uint8, their w (C, n)): each neuron's kept NF crops first, in plan
        order, zeros after its ``n_used``; None when crops are not kept."""
        if self.samples is None:
            return None
        device = self.samples.device
        units = self.plan.units.to(device)
        order = torch.argsort(units, stable=True)
        order = order[self.sampled[order]]             # an image unreadable now left no crop
        ranked = units[order]
        slot = torch.arange(len(ranked), device=device) - torch.searchsorted(ranked, ranked)
        n = int(self.n_used.max()) if len(ranked) else 0
        crops = torch.zeros(self.plan.channels, n, *self.samples.shape[1:], dtype=torch.uint8, device=device)
        weights = torch.zeros(self.plan.channels, n, device=device)
        crops[ranked, slot] = self.samples[order]
        weights[ranked, slot] = self.plan.weights.to(device)[order]
        return crops, weights


def in_batch(p: CropPlan, batch_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(plan indices, their rows in the batch) of the planned entries whose image is in ``batch_ids`` (sorted)."""
    lo = int(torch.searchsorted(p.image_ids, batch_ids[0]))
    hi = int(torch.searchsorted(p.image_ids, batch_ids[-1], right=True))
    if hi <= lo:
        return torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64)  # host: plan indices
    slot = torch.searchsorted(batch_ids, p.image_ids[lo:hi])
    ok = batch_ids[slot.clamp(max=len(batch_ids) - 1)] == p.image_ids[lo:hi]
    return torch.arange(lo, hi)[ok], slot[ok]  # host: plan indices


class ColorDrop:
    """The response-based colour index of the authors' later code: 1 − Σ a_gray / Σ a over a neuron's
    NF crops, a_gray the activation at the same position once the image is grayscale (ITU-R 601
    luma; the position only sees its receptive field, so this is the crop made gray)."""

    LUMA = (0.299, 0.587, 0.114)

    def __init__(self, plan: CropPlan, a_max: torch.Tensor, device):
        self.plan = plan
        self.a_max = a_max.to(device).float()
        self.gray = torch.zeros(plan.channels, device=device)
        self.colour = torch.zeros(plan.channels, device=device)

    @classmethod
    def grayscale(cls, batch: torch.Tensor) -> torch.Tensor:
        luma = torch.tensor(cls.LUMA, device=batch.device).view(1, 3, 1, 1)
        return (batch * luma).sum(1, keepdim=True).expand_as(batch)

    def add(self, gray_output: torch.Tensor, batch_ids: torch.Tensor) -> None:
        """``gray_output``: the layer's output (B, C[, H, W]) on the grayscale batch."""
        idx, slot = in_batch(self.plan, batch_ids.cpu())
        if len(idx) == 0:
            return
        device = self.gray.device
        units = self.plan.units[idx].to(device)
        out = gray_output.flatten(2) if gray_output.dim() == 4 else gray_output.unsqueeze(2)
        values = out[slot.to(device), units, self.plan.positions[idx].to(device)].float().clamp(min=0)
        self.gray.index_add_(0, units, values)
        self.colour.index_add_(0, units, self.plan.weights[idx].to(device) * self.a_max[units])

    def result(self) -> torch.Tensor:
        """(C,) colour drop; NaN where no crop was used."""
        return torch.where(self.colour > 0, 1 - self.gray / self.colour.clamp(min=1e-30),
                           torch.full_like(self.colour, float("nan")))


def gather_crops(p: CropPlan, batch: torch.Tensor, batch_ids: torch.Tensor, fill: torch.Tensor):
    """Yield ``(plan indices, crops (E, 3, s, s))`` for the planned crops whose image is in ``batch``.

    ``batch`` is (B, 3, H, W) float in [0, 1] with sorted ``batch_ids``; plan indices are on the host,
    crops on the batch's device, in chunks of ``CHUNK_BYTES``.
    """
    idx, slot = in_batch(p, batch_ids.cpu())
    if len(idx) == 0:
        return
    device = batch.device
    slot = slot.to(device)
    # Large fields: shrink the image once and crop at NF resolution, rather than cut
    # full-size crops and shrink each (the same picture, far less memory and time).
    s = p.nf_size
    scale = s / p.rf.size
    if scale < 1:
        size = (max(1, round(batch.shape[2] * scale)), max(1, round(batch.shape[3] * scale)))
        batch = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    # Pad by the crop size with the data set's mean colour, so every box lies inside.
    h, w = batch.shape[2:]
    padded = fill.view(1, 3, 1, 1).expand(batch.shape[0], 3, h + 2 * s, w + 2 * s).clone()
    padded[:, :, s:s + h, s:s + w] = batch
    tops = torch.floor(p.tops[idx].double() * scale + 0.5).long().to(device) + s
    lefts = torch.floor(p.lefts[idx].double() * scale + 0.5).long().to(device) + s
    # Every s×s window as a view (no copy); indexing it copies whole rows, so crops come out
    # contiguous, which the sums that follow need to run at memory speed.
    windows = padded.unfold(2, s, 1).unfold(3, s, 1)  # (B, 3, H', W', s, s)
    # A field wholly inside the network's padding (padding wider than the kernel) lies outside the
    # padded image; its nearest window is all fill, and a negative index must not wrap around.
    tops = tops.clamp_(0, windows.shape[2] - 1)
    lefts = lefts.clamp_(0, windows.shape[3] - 1)
    chunk = max(1, CHUNK_BYTES["cpu" if device.type == "cpu" else "other"] // (4 * 3 * s * s))
    for start in range(0, len(idx), chunk):
        end = start + chunk
        yield idx[start:end], windows[slot[start:end], :, tops[start:end], lefts[start:end]]
