"""How sure an index is (docs/science.md §22): the class-prior null of γ — its mean, a Monte Carlo
p-value and the excess over it — and bootstrap intervals of γ and α. Pure functions of the arrays the
row stage holds; every draw comes from a generator seeded by (seed, what, layer, …, neuron or group),
so a neuron's values do not depend on its layer-mates, the chunk sizes or the device."""
from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from .selectivity import OPPONENT, UNIFORM_VARIANCE, pixel_weights, principal_axis

LEVEL = 0.95         # two-sided level of the bootstrap intervals
SAMPLE_SIDE = 8      # NF crops are kept at this side (or their own, if smaller) for the bootstrap of α
TINY = 1e-8          # a weight below this share of the largest possible total takes the exact path
BLOCK = 1 << 20      # elements per vectorised block of the γ functions (numpy): ~8 MB of float64
TENSOR_BLOCK = 1 << 23  # elements per block of α replicates (torch): few, large operations, since each
                        # parallel region costs a thread hand-off (~40 MB of float32 at the default)


def generator(seed: int, *key) -> np.random.Generator:
    """A generator for one (what, layer, …) key: the same key always draws the same numbers."""
    return np.random.default_rng([int(seed), *(zlib.crc32(str(k).encode()) for k in key)])


# ----------------------------------------------------------------------------------------------- M of γ

def distinct_labels(labels: np.ndarray) -> np.ndarray:
    """Distinct non-negative values in each row of ``labels`` (..., N), at least 1: M of §5 at th = 1
    when the labels of zero-weight slots are set to −1."""
    s = np.sort(labels, axis=-1)
    changes = np.count_nonzero(s[..., 1:] != s[..., :-1], axis=-1)
    return np.maximum(changes + 1 - (s[..., 0] < 0), 1)


def class_count(labels: np.ndarray, w: np.ndarray, th: float) -> np.ndarray:
    """M of §5 for each row of (R, N) class ids (−1: no class) and weights, exactly as
    ``selectivity.class_selectivity`` computes it (classes summed in slot order), for any th."""
    r, n = labels.shape
    lab = np.where(w > 0, labels, -1)               # zero-weight slots never count (see §5)
    order = np.argsort(lab, axis=1, kind="stable")
    ls = np.take_along_axis(lab, order, 1)
    ws = np.take_along_axis(np.where(w > 0, w, 0.0), order, 1)
    first = np.ones((r, n), dtype=bool)
    first[:, 1:] = ls[:, 1:] != ls[:, :-1]
    starts = np.flatnonzero(first)
    sums = np.add.reduceat(ws.ravel(), starts) if len(starts) else np.zeros(0)
    sums[ls.ravel()[starts] < 0] = 0.0
    weight = np.zeros(r * n)
    weight[starts] = sums
    weight = weight.reshape(r, n)                   # each class's summed weight, at its first slot
    total = weight.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(total > 0, weight / total, 0.0)
    cumulative = np.cumsum(-np.sort(-freq, axis=1), axis=1)
    return np.minimum((cumulative < th - 1e-9).sum(1) + 1, np.maximum((freq > 0).sum(1), 1))


def _by_count(w: np.ndarray, n: np.ndarray, th: float) -> np.ndarray:
    """(C,) bool: M is the number of classes among the slots with w > 0, whatever their weights and
    whichever slots a resample repeats — th >= 1 and no positive weight small enough that its
    class's share could fall under the 1e-9 tolerance of §5."""
    if th < 1:
        return np.zeros(len(w), dtype=bool)
    smallest = np.where(w > 0, w, np.inf).min(1)
    return smallest >= TINY * np.maximum(n, 1) * w.max(1, initial=0.0)


def _observed_m(labels: np.ndarray, w: np.ndarray, th: float, counted: np.ndarray) -> np.ndarray:
    m = np.ones(len(w), dtype=np.int64)
    m[counted] = distinct_labels(np.where(w[counted] > 0, labels[counted], -1))
    m[~counted] = class_count(labels[~counted], w[~counted], th)
    return m


def _prepare(rel: np.ndarray, labels: np.ndarray):
    valid = labels >= 0
    w = np.where(valid, np.nan_to_num(np.asarray(rel, dtype=np.float64), nan=0.0), 0.0)
    n = valid.sum(1)
    alive = (w.sum(1) > 0) & (n > 1)
    return valid, w, n, alive


def _blocks(rows: np.ndarray, per_row: int, block: int | None = None):
    step = max(1, (block or BLOCK) // max(per_row, 1))
    for start in range(0, len(rows), step):
        yield rows[start:start + step]


def _uniform_draws(rngs: list[np.random.Generator], shape: tuple[int, ...]) -> np.ndarray:
    """(len(rngs), *shape) uniforms in [0, 1), one generator per row."""
    out = np.empty((len(rngs), *shape))
    for g, row in zip(rngs, out):
        g.random(out=row)
    return out


def _draw_sizes(total: int, per_draw: int):
    step = max(1, BLOCK // max(per_draw, 1))
    for start in range(0, total, step):
        yield min(step, total - start)


# ------------------------------------------------------------------------------------- the null of γ

@dataclass
class GammaNull:
    gamma: np.ndarray   # (C,) γ as the test computes it (= class_selectivity's); NaN where undefined
    mean: np.ndarray    # (C,) mean γ over the draws: gamma_null_mean
    p: np.ndarray       # (C,) (1 + #{null γ >= γ}) / (1 + draws): gamma_p
    excess: np.ndarray  # (C,) (γ − mean) / (1 − mean): gamma_excess; NaN where mean = 1


def gamma_null(rel: np.ndarray, labels: np.ndarray, population: np.ndarray, draws: int, th: float = 1.0,
               seed: int = 0, key: tuple = ()) -> GammaNull:
    """γ against the class prior (docs/science.md §22): each neuron keeps its top images' weights,
    their labels are redrawn i.i.d. from the data set's class frequencies, ``draws`` times.

    ``rel``, ``labels``: (C, N) as for ``class_selectivity`` (−1: empty slot or no label; such slots
    stay out). ``population``: the label of every image of the data set (−1: none); drawing an image
    uniformly and taking its label is drawing from the class frequencies.
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1, not {draws}")
    c, slots = labels.shape
    valid, w, n, alive = _prepare(rel, labels)
    pool = np.asarray(population)[np.asarray(population) >= 0].astype(np.int32)
    counted = _by_count(w, n, th)
    m_obs = _observed_m(labels, w, th, counted)
    hits = np.zeros(c)      # draws whose M is at most the observed one (γ at least the observed)
    m_sum = np.zeros(c)
    if len(pool):
        # th = 1: the null of M is the number of classes among P labels drawn from the prior, P the
        # count of positive weights. Neurons with the same P share one set of draws.
        positive = (w > 0).sum(1)
        for p_count in np.unique(positive[alive & counted]):
            rng = generator(seed, "gamma-null", *key, "positive", int(p_count))
            sample = np.concatenate([
                distinct_labels(pool[(rng.random((d, int(p_count))) * len(pool)).astype(np.int64)])
                for d in _draw_sizes(draws, int(p_count))])
            rows = np.flatnonzero(alive & counted & (positive == p_count))
            hits[rows] = np.searchsorted(np.sort(sample), m_obs[rows], side="right")
            m_sum[rows] = sample.sum()
        # Otherwise M needs the weights: every such neuron gets its own draws of all its slots.
        for block in _blocks(np.flatnonzero(alive & ~counted), draws * slots):
            rngs = [generator(seed, "gamma-null", *key, "unit", int(u)) for u in block]
            for d in _draw_sizes(draws, len(block) * slots):
                u = _uniform_draws(rngs, (d, slots))                                  # (b, d, N)
                drawn = np.where(valid[block][:, None], pool[(u * len(pool)).astype(np.int64)], -1)
                m = class_count(drawn.reshape(-1, slots), np.broadcast_to(w[block][:, None], drawn.shape).reshape(-1, slots),
                                th).reshape(len(block), d)
                hits[block] += (m <= m_obs[block][:, None]).sum(1)
                m_sum[block] += m.sum(1)
    else:
        alive = np.zeros(c, dtype=bool)             # no image has a label: nothing to draw from
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.where(alive, (n - m_obs) / (n - 1), np.nan)
        mean = np.where(alive, (n - m_sum / draws) / (n - 1), np.nan)
        p = np.where(alive, (1 + hits) / (1 + draws), np.nan)
        excess = np.where(alive & (mean < 1 - 1e-12), (gamma - mean) / (1 - mean), np.nan)
    return GammaNull(gamma, mean, p, excess)


# ------------------------------------------------------------------------------------ the bootstrap

def centred_interval(estimate: np.ndarray, replicates: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The estimate plus the (1 ∓ level)/2 quantiles of the replicates' deviations from their mean,
    clipped to [0, 1]; NaN without an estimate or with fewer than two finite replicates."""
    estimate = np.asarray(estimate, dtype=np.float64)
    lo = np.full(len(estimate), np.nan)
    hi = np.full(len(estimate), np.nan)
    ok = np.isfinite(estimate) & (np.isfinite(replicates).sum(1) >= 2)
    if ok.any():
        r = replicates[ok]
        deviation = r - np.nanmean(r, axis=1, keepdims=True)
        levels = [(1 - level) / 2, (1 + level) / 2]
        full = np.isfinite(deviation).all(1)       # the same quantiles, but in one call, not row by row
        q = np.empty((2, len(r)))
        q[:, full] = np.quantile(deviation[full], levels, axis=1)
        q[:, ~full] = np.nanquantile(deviation[~full], levels, axis=1)
        lo[ok] = np.clip(estimate[ok] + q[0], 0.0, 1.0)
        hi[ok] = np.clip(estimate[ok] + q[1], 0.0, 1.0)
    return lo, hi


def gamma_replicates(rel: np.ndarray, labels: np.ndarray, resamples: int, th: float = 1.0, seed: int = 0,
                     key: tuple = ()) -> np.ndarray:
    """(C, resamples) γ of each neuron's top images resampled with replacement (n picks among its n
    labelled slots); NaN for a neuron without γ or a resample whose weights are all zero."""
    c, slots = labels.shape
    valid, w, n, alive = _prepare(rel, labels)
    counted = _by_count(w, n, th)
    out = np.full((c, resamples), np.nan)
    packed = np.argsort(~valid, axis=1, kind="stable")        # each row's labelled slots first
    brings = np.take_along_axis(np.where(w > 0, labels, -1), packed, 1).astype(np.int32)  # the class a slot adds to M
    for by_count in (True, False):
        for block in _blocks(np.flatnonzero(alive & (counted if by_count else ~counted)), resamples * slots):
            rngs = [generator(seed, "gamma-bootstrap", *key, "unit", int(u)) for u in block]
            nb = n[block][:, None, None]
            pick = _uniform_draws(rngs, (resamples, slots))    # (b, B, N)
            pick *= nb
            pick = pick.astype(np.int64)
            pick += (np.arange(len(block)) * slots)[:, None, None]  # into the block's rows, flattened
            inside = np.arange(slots) < nb                     # the first n picks are the resample
            if by_count:
                lab = np.where(inside, np.take(brings[block].ravel(), pick), -1)
                lab.sort(axis=2)
                m = distinct_labels(lab)
                some = lab[..., -1] >= 0                       # a pick with positive weight
            else:
                slot = np.take(packed[block].ravel(), pick) + (np.arange(len(block)) * slots)[:, None, None]
                lab = np.where(inside, np.take(labels[block].ravel(), slot), -1).reshape(-1, slots)
                ww = np.where(inside, np.take(w[block].ravel(), slot), 0.0).reshape(-1, slots)
                m = class_count(lab, ww, th).reshape(len(block), resamples)
                some = ww.sum(1).reshape(len(block), resamples) > 0
            with np.errstate(invalid="ignore", divide="ignore"):
                out[block] = np.where(some, (nb[:, :, 0] - m) / (nb[:, :, 0] - 1), np.nan)
    return out


def gamma_interval(rel: np.ndarray, labels: np.ndarray, gamma: np.ndarray, resamples: int, th: float = 1.0,
                   seed: int = 0, key: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """(gamma_lo, gamma_hi): the 95 % bootstrap interval of γ (docs/science.md §22)."""
    return centred_interval(gamma, gamma_replicates(rel, labels, resamples, th, seed, key))


def alpha_only(nf: torch.Tensor, sigma: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
    """α of ``selectivity.color_selectivity`` (docs/science.md §4) alone, batched: (n, 3, H, W) NFs,
    (n, H, W) σ and seen pixels -> (n,) α, on their device and in their dtype."""
    return _alpha_of_opponent(OPPONENT.to(device=nf.device, dtype=nf.dtype) @ nf.flatten(2), sigma.flatten(1),
                              None if seen is None else seen.flatten(1))


def _alpha_of_opponent(opp: torch.Tensor, sigma: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
    """α from the NFs' opponent colours (n, 3, P), σ (n, P) and the seen pixels (n, P); the uncentred
    moment is the centred one plus μμᵀ (float32 is ample for bootstrap replicates)."""
    w = pixel_weights(sigma, seen).unsqueeze(2)                      # (n, P, 1), sums to 1
    mean = torch.bmm(opp, w)                                         # (n, 3, 1)
    centred = opp.sub_(mean)                                         # in place: opp is a temporary of its callers
    cov = torch.bmm(centred * w.transpose(1, 2), centred.transpose(1, 2))
    use_centred = cov.diagonal(dim1=1, dim2=2).sum(1) >= UNIFORM_VARIANCE
    moment = torch.where(use_centred.view(-1, 1, 1), cov, cov + mean * mean.transpose(1, 2))
    v = principal_axis(moment)
    return (torch.rad2deg(torch.arccos(v[:, 2].abs().clamp(max=1.0))) / 90.0).to(opp.dtype)


def alpha_replicates(samples: torch.Tensor, weights: torch.Tensor, n_used, resamples: int, seed: int = 0,
                     key: tuple = (), seen: torch.Tensor | None = None) -> np.ndarray:
    """(C, resamples) α of each neuron's NF rebuilt from its NF crops resampled with replacement.

    ``samples``: (C, n, 3, r, r) uint8, each neuron's NF crops shrunk to r (its first ``n_used``
    entries); ``weights``: (C, n) their w; ``seen``: (C, r, r) bool, the sample pixels with some pixel
    inside the image (None: all). A replicate is the NF of §3 and the σ of §4 over the resampled
    crops (a crop drawn k times counts k times), in float32 on ``samples``' device.
    """
    device = samples.device
    c, n_max = samples.shape[:2]
    n_used = np.asarray(n_used).astype(np.int64)
    out = np.full((c, resamples), np.nan)
    rows = np.flatnonzero(n_used >= 2)                     # one crop has nothing to resample
    if not len(rows) or not resamples:
        return out
    pixels = samples.shape[-1] * samples.shape[-2]
    opponent = OPPONENT.to(device=device, dtype=torch.float32)
    for block in _blocks(rows, resamples * (n_max + 9 * pixels), TENSOR_BLOCK):
        counts = np.zeros((len(block), resamples, n_max), dtype=np.float32)
        for i, u in enumerate(block):
            k = int(n_used[u])
            pick = (generator(seed, "alpha-bootstrap", *key, "unit", int(u)).random((resamples, k)) * k).astype(np.int64)
            counts[i, :, :k] = np.bincount((np.arange(resamples)[:, None] * k + pick).ravel(),
                                           minlength=resamples * k).reshape(resamples, k)
        m = torch.as_tensor(counts, device=device)                               # (b, B, n), rows sum to k
        index = torch.as_tensor(block, device=device)
        crops = samples[index].to(torch.float32).div_(255).flatten(3)            # (b, n, 3, P)
        b = len(block)
        # The NF is linear in the crops, so its opponent colours are the weighted mean of theirs.
        mw = m * weights[index].to(torch.float32).unsqueeze(1)
        mw /= mw.sum(2, keepdim=True).clamp(min=1e-12)
        opp = torch.bmm(mw, (opponent @ crops).flatten(2)).view(b * resamples, 3, pixels)
        # σ from moments about each neuron's mean crop: no float32 cancellation (equal crops give σ = 0).
        k = torch.as_tensor(n_used[block], device=device, dtype=torch.float32).view(-1, 1, 1, 1)
        both = crops.new_empty(b, n_max, 6, pixels)                   # centred crops, then their squares
        torch.sub(crops, crops.sum(1, keepdim=True) / k, out=both[:, :, :3])
        torch.mul(both[:, :, :3], both[:, :, :3], out=both[:, :, 3:])
        moments = torch.bmm(m / k.view(-1, 1, 1), both.flatten(2))
        mean, square = moments.view(b, resamples, 2, 3, pixels).unbind(2)
        sigma = (square - mean * mean).clamp_(min=0).sqrt_().mean(2).view(b * resamples, pixels)
        mask = None if seen is None else seen[index].flatten(1).repeat_interleave(resamples, 0)
        out[block] = _alpha_of_opponent(opp, sigma, mask).view(b, resamples).cpu().numpy()
    return out


def alpha_interval(samples: torch.Tensor, weights: torch.Tensor, n_used, alpha: np.ndarray, resamples: int,
                   seed: int = 0, key: tuple = (), seen: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(alpha_lo, alpha_hi): the 95 % bootstrap interval of α (docs/science.md §22), placed on the
    full-resolution α by ``centred_interval``; ``seen``: (C, s, s) NF pixels inside the image in some crop."""
    if seen is not None:  # a sample pixel counts when any NF pixel of its bin does
        seen = torch.nn.functional.adaptive_max_pool2d(seen.float().unsqueeze(1), samples.shape[-1])[:, 0] > 0
        seen = seen.to(samples.device)
    return centred_interval(alpha, alpha_replicates(samples, weights, n_used, resamples, seed, key, seen))


def shrink_crops(crops: torch.Tensor, side: int) -> torch.Tensor:
    """(E, 3, s, s) crops in [0, 1] -> (E, 3, side, side) uint8, each pixel the mean of its bin (the bins of
    adaptive average pooling), taken as two small matrix products; kept as they are when s <= side."""
    s = crops.shape[-1]
    if s > side:
        bins = _bins(s, side, crops.dtype, crops.device)
        crops = (bins @ crops) @ bins.T
    return (crops.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


@functools.lru_cache(maxsize=64)
def _bins(s: int, side: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(side, s): row i averages the pixels of adaptive pooling's bin i. Cached (one per layer, used per
    chunk), so shared: read-only, and a normal tensor even when first made in inference mode."""
    with torch.inference_mode(False):
        bins = torch.zeros(side, s, dtype=dtype, device=device)
        for i in range(side):
            lo, hi = (i * s) // side, -((-(i + 1) * s) // side)
            bins[i, lo:hi] = 1.0 / (hi - lo)
    return bins
