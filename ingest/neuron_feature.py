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

    def __post_init__(self):
        # Fields larger than the NF are cut from the image shrunk by ``scale``, boxes rounded to its grid.
        self.scale = min(1.0, self.nf_size / self.rf.size)
        if self.scale < 1:
            self.crop_tops = torch.floor(self.tops.double() * self.scale + 0.5).long()
            self.crop_lefts = torch.floor(self.lefts.double() * self.scale + 0.5).long()
        else:
            self.crop_tops, self.crop_lefts = self.tops.long(), self.lefts.long()

    def shrunk(self, height: int, width: int) -> tuple[int, int]:
        """The side of an image of ``height`` × ``width`` once shrunk for this layer's crops."""
        if self.scale < 1:
            return max(1, round(height * self.scale)), max(1, round(width * self.scale))
        return height, width

    def reach(self, height: int, width: int) -> tuple[int, int, int, int]:
        """How far the boxes leave the (shrunk) image: pixels above, below, left, right (at least 0).
        A field may lie wholly inside the network's padding, when that is wider than the kernel."""
        if len(self.crop_tops) == 0:
            return 0, 0, 0, 0
        h, w = self.shrunk(height, width)
        s = self.nf_size
        return (max(0, -int(self.crop_tops.min())), max(0, int(self.crop_tops.max()) + s - h),
                max(0, -int(self.crop_lefts.min())), max(0, int(self.crop_lefts.max()) + s - w))


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
        self.plan, self.device = plan, torch.device(device)
        # The (C, 3, s, s) sums are made at the first add, once the image loader's worker processes
        # exist: memory written after they fork is copied page by page (copy-on-write).
        self.weighted = self.total = self.squares = None
        self.done = False
        self.weight = torch.zeros(plan.channels, device=device)
        self.n_used = torch.zeros(plan.channels, dtype=torch.int64, device=device)
        # With sample_side > 0 every NF crop is also kept, shrunk to that side in 8 bits, for the
        # bootstrap of α (docs/science.md §22).
        side = min(sample_side, s)
        self.samples = (torch.zeros(len(plan.units), 3, side, side, dtype=torch.uint8, device=device)
                        if sample_side > 0 else None)
        self.sampled = torch.zeros(len(plan.units), dtype=torch.bool, device=device)  # crops actually cut
        self.image_size: tuple[int, int] | None = None  # (h, w) of the images the crops were cut from, shrunk
        self.units, self.weights = plan.units.to(device), plan.weights.to(device)  # the plan's columns, moved once

    def add(self, canvases: "Canvases", batch_ids: torch.Tensor) -> None:
        """Accumulate every planned crop whose image is in the batch of ``canvases``.

        The batch's crops are taken neuron by neuron, so the few rows of the sums a chunk touches stay
        in the caches while its crops are added; each chunk is cut into the scratch memory of
        ``canvases`` (a fresh tensor per chunk costs its page faults again on a CPU)."""
        idx, slot = in_batch(self.plan, batch_ids.cpu())
        if len(idx) == 0:
            return
        self._allocate()
        order = torch.argsort(self.plan.units[idx], stable=True)
        idx, slot = idx[order], slot[order]
        canvas = canvases.for_plan(self.plan)
        device = canvas.device
        self.image_size = canvas.image_size
        source = CropSource(self.plan, canvas, slot, idx)
        n_chunk = chunk_crops(self.plan.nf_size, device)
        crops_buffer, weighted_buffer = canvases.scratch(min(n_chunk, len(idx)), self.plan.nf_size)
        every = idx.to(device)
        all_units, all_w = self.units[every], self.weights[every]
        self.weight.index_add_(0, all_units, all_w)
        self.n_used.index_add_(0, all_units, torch.ones_like(all_units))
        self.sampled[every] = True
        for start in range(0, len(idx), n_chunk):
            part = slice(start, start + n_chunk)
            units, w = all_units[part], all_w[part]
            n = len(units)
            crops = source.cut(part, out=crops_buffer[:n])
            self.weighted.index_add_(0, units, torch.mul(crops, w.view(-1, 1, 1, 1), out=weighted_buffer[:n]))
            self.total.index_add_(0, units, crops)
            if self.samples is not None:
                self.samples[every[part]] = shrink_crops(crops, self.samples.shape[-1])
            self.squares.index_add_(0, units, crops.square_())  # last: squares the buffer in place

    def _allocate(self) -> None:
        if self.weighted is None:
            s = self.plan.nf_size
            with torch.inference_mode(False):  # add runs in the pass's inference mode; result() after it
                self.weighted, self.total, self.squares = (
                    torch.zeros(self.plan.channels, 3, s, s, device=self.device) for _ in range(3))

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(NF (C, 3, s, s), σ (C, s, s) mean over channels, n_used (C,)); NF is 0 where no crop was used.

        Computed in the sums' own memory (a layer's sums are hundreds of MB, and fresh temporaries that
        size cost their page faults), so it is called once, after the last ``add``."""
        if self.done:
            raise RuntimeError("NeuronFeatureAccumulator.result() was already called")
        self.done = True
        self._allocate()
        n = self.n_used.clamp(min=1).view(-1, 1, 1, 1).float()
        nf = self.weighted.div_(self.weight.clamp(min=1e-12).view(-1, 1, 1, 1)).clamp_(0, 1)
        mean = self.total.div_(n)
        sigma = self.squares.div_(n).addcmul_(mean, mean, value=-1).clamp_(min=0).sqrt_().mean(1)
        self.total = self.squares = None
        return nf, sigma, self.n_used

    def seen(self) -> torch.Tensor:
        """(C, s, s) bool: NF pixels inside the image in at least one of the neuron's crops. The others are
        the mean-colour fill in every crop (fields larger than the image, or near its border): the crops
        agree there only because they are padding, so α leaves them out (docs/science.md §4)."""
        c, s = self.plan.channels, self.plan.nf_size
        device = self.n_used.device
        if self.image_size is None:
            return torch.zeros(c, s, s, dtype=torch.bool, device=device)
        h, w = self.image_size
        cut = self.sampled
        units = self.units[cut]
        tops, lefts = self.plan.crop_tops.to(device)[cut], self.plan.crop_lefts.to(device)[cut]
        # Crop row r shows image row top + r: the rows inside the image are [r0, r1), the columns [c0, c1).
        r0, r1 = (-tops).clamp(0, s), (h - tops).clamp(0, s)
        c0, c1 = (-lefts).clamp(0, s), (w - lefts).clamp(0, s)
        keep = (r1 > r0) & (c1 > c0)
        units, r0, r1, c0, c1 = units[keep], r0[keep], r1[keep], c0[keep], c1[keep]
        # Each rectangle as the four corners of a 2-D difference array; two cumulative sums count them.
        counts = torch.zeros(c, s + 1, s + 1, device=device)
        ones = torch.ones(len(units), device=device)
        for rows, cols, sign in ((r0, c0, 1.0), (r0, c1, -1.0), (r1, c0, -1.0), (r1, c1, 1.0)):
            counts.index_put_((units, rows, cols), ones * sign, accumulate=True)
        return counts.cumsum(1).cumsum(2)[:, :s, :s] > 0

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


def chunk_crops(nf_size: int, device) -> int:
    """Crops per chunk: ``CHUNK_BYTES`` of float32 crops of side ``nf_size``."""
    device = torch.device(device)
    return max(1, CHUNK_BYTES["cpu" if device.type == "cpu" else "other"] // (4 * 3 * nf_size * nf_size))


class Canvas:
    """A batch shrunk to one NF scale and padded with the data set's mean colour far enough on each
    side that every box of the layers sharing it lies inside."""

    def __init__(self, batch: torch.Tensor, size: tuple[int, int], pads: tuple[int, int, int, int],
                 fill: torch.Tensor, memory: torch.Tensor | None = None):
        if tuple(batch.shape[2:]) != size:  # shrunk once: the same picture as shrinking each crop, far less work
            batch = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
        above, below, left, right = pads
        b, _, h, w = batch.shape
        shape = (b, 3, h + above + below, w + left + right)
        # ``memory``: an earlier batch's canvas of this shape and fill; only its inside changes.
        if memory is None or memory.shape[1:] != shape[1:] or len(memory) < b:
            memory = fill.view(1, 3, 1, 1).expand(shape).contiguous()
        self.memory, self.pixels = memory, memory[:b]
        self.pixels[:, :, above:above + h, left:left + w] = batch
        self.above, self.left = above, left
        self.image_size = (h, w)
        self.device = batch.device

    def rows(self, s: int) -> torch.Tensor:
        """Every run of ``s`` pixels of the flat canvas as a row of a view (no copy): a crop is 3·s such
        rows, and index_select copies whole rows, several times faster than indexing 2-D windows."""
        return self.pixels.view(-1).as_strided((self.pixels.numel() - s + 1, s), (1, 1))


class Canvases:
    """One batch's canvases: one per NF scale among ``plans``, built on first use and shared by every
    layer of that scale, and the scratch memory the crops of a chunk are cut into.

    ``previous``: the last batch's canvases, whose memory this batch reuses. A canvas or chunk is tens
    of MB; allocated afresh for every batch, a CPU spends more time faulting its pages in than cutting.
    """

    def __init__(self, plans: list[CropPlan], batch: torch.Tensor, fill: torch.Tensor,
                 previous: "Canvases | None" = None):
        self.batch, self.fill = batch, fill
        self.pads: dict[tuple[int, int], tuple[int, ...]] = {}
        h, w = batch.shape[2:]
        for plan in plans:
            size = plan.shrunk(h, w)
            self.pads[size] = tuple(max(a, b) for a, b in zip(self.pads.get(size, (0, 0, 0, 0)), plan.reach(h, w)))
        self.built: dict[tuple[int, int], Canvas] = {}
        reuse = previous is not None and previous.fill is fill and previous.pads == self.pads
        self.memory = dict(previous.memory) if reuse else {}  # NF scale -> canvas memory
        self._scratch = previous._scratch if previous is not None else None

    def for_plan(self, plan: CropPlan) -> Canvas:
        size = plan.shrunk(*self.batch.shape[2:])
        if size not in self.built:
            canvas = Canvas(self.batch, size, self.pads[size], self.fill, self.memory.get(size))
            self.built[size], self.memory[size] = canvas, canvas.memory
        return self.built[size]

    def scratch(self, n: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two (n, 3, s, s) float32 tensors in memory shared by every layer and batch (overwritten by
        the next call)."""
        numel = n * 3 * s * s
        if self._scratch is None or self._scratch.shape[1] < numel:
            self._scratch = torch.empty(2, numel, device=self.batch.device)
        return tuple(self._scratch[i, :numel].view(n, 3, s, s) for i in range(2))


class CropSource:
    """Where each of some planned crops lies in a canvas. ``slot``: each crop's row in the batch;
    ``idx``: its plan index (both on the host, in the order the crops will be cut)."""

    def __init__(self, p: CropPlan, canvas: Canvas, slot: torch.Tensor, idx: torch.Tensor):
        device, s = canvas.device, p.nf_size
        self.size, self.rows = s, canvas.rows(s)
        self.height, self.width = canvas.pixels.shape[2:]
        self.slot = slot.to(device)
        self.tops = (p.crop_tops[idx] + canvas.above).to(device)
        self.lefts = (p.crop_lefts[idx] + canvas.left).to(device)
        self.offsets = (torch.arange(3, device=device).view(1, 3, 1) * self.height
                        + torch.arange(s, device=device).view(1, 1, s))

    def cut(self, part: slice, out: torch.Tensor | None = None) -> torch.Tensor:
        """The crops ``part`` of this source's order, (n, 3, s, s), written into ``out`` when given."""
        s, slot, tops, lefts = self.size, self.slot[part], self.tops[part], self.lefts[part]
        starts = (((slot * 3 * self.height + tops).view(-1, 1, 1) + self.offsets) * self.width
                  + lefts.view(-1, 1, 1)).view(-1)
        if out is not None:
            return torch.index_select(self.rows, 0, starts, out=out.view(-1, s)).view(-1, 3, s, s)
        return self.rows.index_select(0, starts).view(-1, 3, s, s)


def gather_crops(p: CropPlan, batch: torch.Tensor, batch_ids: torch.Tensor, fill: torch.Tensor):
    """Yield ``(plan indices, crops (E, 3, s, s))`` for the planned crops whose image is in ``batch``,
    in plan order.

    ``batch`` is (B, 3, H, W) float in [0, 1] with sorted ``batch_ids``; plan indices are on the host,
    crops on the batch's device, in chunks of ``CHUNK_BYTES``.
    """
    idx, slot = in_batch(p, batch_ids.cpu())
    if len(idx) == 0:
        return
    source = CropSource(p, Canvases([p], batch, fill).for_plan(p), slot, idx)
    chunk = chunk_crops(p.nf_size, batch.device)
    for start in range(0, len(idx), chunk):
        yield idx[start:start + chunk], source.cut(slice(start, start + chunk))
