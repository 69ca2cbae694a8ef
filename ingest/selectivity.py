"""Selectivity indexes of Rafegas et al.: colour α (docs/science.md §4), class γ (§5), ranked-curve area (§12)."""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, fields

import numpy as np
import torch

# RGB -> opponent space (O1, O2, O3); O3 is the intensity axis b = (0, 0, 1).
OPPONENT = torch.tensor([[1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],  # host: α is computed on the CPU, in float64
                         [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
                         [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)]], dtype=torch.float64)
UNIFORM_VARIANCE = 1e-6  # below this weighted colour variance an NF counts as uniform
EPSILON = 1e-6
CHROMATIC_SHARE = 0.1  # the "most chromatic pixels": the top 10 % by chroma
BLOCK_ELEMENTS = 1 << 19  # float64 elements per (n, 3, P) temporary of color_selectivity: 4 MB


@dataclass
class ColorSelectivity:
    alpha: np.ndarray       # (C,) in [0, 1]
    hue: np.ndarray         # (C,) degrees in [0, 360)
    centred: np.ndarray     # (C,) bool: centred PCA (False: uniform NF, mean-colour direction)
    chromatic_rgb: np.ndarray  # (C, 3) mean RGB of the most chromatic pixels, for the colour name


def principal_axis(moment: torch.Tensor, gap: float = 1e-3) -> torch.Tensor:
    """(n, 3) float64 unit eigenvector of the largest eigenvalue of each symmetric (n, 3, 3), sign arbitrary.

    Closed form (trigonometric eigenvalues, then the longest cross product of two rows of M − λ₁I),
    in NumPy: a few dozen passes over n numbers, several times cheaper than a batched ``eigh`` on the
    millions of matrices of the α bootstrap (and free of torch's per-operation thread hand-offs).
    Where λ₁ − λ₂ <= ``gap`` × max|λ| the axis is ill-conditioned for any method: those rows keep
    ``torch.linalg.eigh`` of the matrix as given, so they match it exactly."""
    a = moment.detach().cpu().to(torch.float64).reshape(-1, 9).numpy().T.copy()   # (9, n), rows contiguous
    a00, a11, a22 = a[0], a[4], a[8]
    a01, a02, a12 = (a[1] + a[3]) / 2, (a[2] + a[6]) / 2, (a[5] + a[7]) / 2
    q = (a00 + a11 + a22) / 3
    d0, d1, d2 = a00 - q, a11 - q, a22 - q
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.sqrt((d0 * d0 + d1 * d1 + d2 * d2 + 2 * (a01 * a01 + a02 * a02 + a12 * a12)) / 6)
        det = d0 * (d1 * d2 - a12 * a12) - a01 * (a01 * d2 - a12 * a02) + a02 * (a01 * a12 - d1 * a02)
        phi = np.arccos(np.clip(det / (2 * p ** 3), -1.0, 1.0)) / 3     # NaN where p = 0: eigh below
        l1 = q + 2 * p * np.cos(phi)
        l3 = q + 2 * p * np.cos(phi + 2 * math.pi / 3)
        l2 = 3 * q - l1 - l3
        b00, b11, b22 = a00 - l1, a11 - l1, a22 - l1                  # diagonal of M − λ₁I
        cross = np.stack([                                            # row0×row1, row0×row2, row1×row2
            a01 * a12 - a02 * b11, a02 * a01 - b00 * a12, b00 * b11 - a01 * a01,
            a01 * b22 - a02 * a12, a02 * a02 - b00 * b22, b00 * a12 - a01 * a02,
            b11 * b22 - a12 * a12, a12 * a02 - a01 * b22, a01 * a12 - b11 * a02]).reshape(3, 3, -1)
        size = (cross * cross).sum(1)                                 # (3, n) squared lengths
        best = size.argmax(0)
        n = np.arange(size.shape[1])
        v = (cross[best, :, n] / np.sqrt(size[best, n])[:, None])     # (n, 3)
        ok = (l1 - l2 > gap * np.maximum(np.abs(l1), np.abs(l3))) & np.isfinite(v).all(1)
    out = torch.from_numpy(v)  # host: solved in NumPy, moved to the moment's device on return
    if not ok.all():
        bad = torch.from_numpy(np.flatnonzero(~ok))  # host: indexes the host result
        out[bad] = torch.linalg.eigh(moment.detach().cpu()[bad])[1][:, :, -1].to(torch.float64)
    return out.to(moment.device)


def pixel_weights(sigma: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
    """(n, P) pixel weights π_p = 1 / (σ_p + ε) of α, summing to 1 (docs/science.md §4); 0 on the pixels
    ``seen`` (n, P) marks False — the mean-colour fill of every crop, where σ = 0 only because the crops
    are padding there and 1 / ε would outweigh every pixel of the image — unless a neuron has no pixel
    seen at all."""
    w = (sigma + EPSILON).reciprocal()
    if seen is not None:
        w = w * (seen | ~seen.any(1, keepdim=True)).to(w.dtype)
    return w / w.sum(1, keepdim=True)


def color_selectivity(nf: torch.Tensor, sigma: torch.Tensor, seen: torch.Tensor | None = None) -> ColorSelectivity:
    """α of each NF. ``nf``: (C, 3, H, W) RGB in [0, 1]; ``sigma``: (C, H, W) per-pixel std across crops;
    ``seen``: (C, H, W) bool, the pixels inside the image in some crop (None: all).

    Neurons are taken in blocks of a few MB of float64: a whole layer's temporaries are hundreds of MB,
    each a fresh allocation whose page faults cost more than the arithmetic."""
    if len(nf) == 0:
        return _color_selectivity(nf, sigma, seen)
    step = max(1, BLOCK_ELEMENTS // max(1, nf[0].numel()))
    parts = [_color_selectivity(nf[i:i + step], sigma[i:i + step], None if seen is None else seen[i:i + step])
             for i in range(0, len(nf), step)]
    return ColorSelectivity(*(np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(ColorSelectivity)))


def _color_selectivity(nf: torch.Tensor, sigma: torch.Tensor, seen: torch.Tensor | None) -> ColorSelectivity:
    c = nf.shape[0]
    rgb = nf.to(torch.float64).flatten(2)                             # (C, 3, P): channels as rows, for bmm
    opp = OPPONENT @ rgb                                              # (C, 3, P)
    w = pixel_weights(sigma.to(torch.float64).flatten(1),
                      None if seen is None else seen.flatten(1)).unsqueeze(2)  # (C, P, 1)
    mean = torch.bmm(opp, w)                                          # (C, 3, 1)
    centred = opp - mean
    cov = torch.bmm(centred * w.transpose(1, 2), centred.transpose(1, 2))
    use_centred = cov.diagonal(dim1=1, dim2=2).sum(1) >= UNIFORM_VARIANCE
    moment = cov.clone()
    if not bool(use_centred.all()):  # the second moment summed as it is, not as cov + μμᵀ (see §4)
        flat = ~use_centred
        moment[flat] = torch.bmm(opp[flat] * w[flat].transpose(1, 2), opp[flat].transpose(1, 2))
    _, vectors = torch.linalg.eigh(moment)
    v = vectors[:, :, -1]                                             # first component, unit length
    alpha = torch.rad2deg(torch.arccos(v[:, 2].abs().clamp(max=1.0))) / 90.0
    mean = mean.squeeze(2)

    # Sign v toward the most chromatic pixels, so the hue names the colour the NF shows.
    chroma = opp[:, 0].hypot(opp[:, 1])                               # (C, P)
    k = max(1, int(round(CHROMATIC_SHARE * chroma.shape[1])))
    top = chroma.topk(k, dim=1).indices.unsqueeze(1).expand(-1, 3, -1)
    top_opp = opp.gather(2, top).mean(2)
    reference = torch.where(use_centred.view(c, 1), top_opp - mean, top_opp)
    sign = torch.where((v[:, :2] * reference[:, :2]).sum(1) < 0, -1.0, 1.0).to(v.dtype)
    v = v * sign.unsqueeze(1)
    hue = torch.rad2deg(torch.atan2(v[:, 1], v[:, 0])) % 360.0
    top_rgb = rgb.gather(2, top).mean(2)
    return ColorSelectivity(alpha.numpy(), hue.numpy(), use_centred.numpy(), top_rgb.numpy())


def color_name(rgb) -> str:
    """A basic colour term for an RGB colour in [0, 1] (the eleven of Berlin and Kay)."""
    h, s, v = colorsys.rgb_to_hsv(*(float(min(max(x, 0.0), 1.0)) for x in rgb))
    h *= 360
    if v < 0.2:
        return "black"
    if s < 0.2:
        return "white" if v > 0.85 else "gray"
    if h < 15 or h >= 340:
        return "pink" if s < 0.5 and v > 0.6 else ("brown" if v < 0.5 else "red")
    if h < 45:
        return "brown" if v < 0.65 else "orange"
    if h < 70:
        return "brown" if v < 0.5 else "yellow"
    if h < 165:
        return "green"
    if h < 260:
        return "blue"
    if h < 300:
        return "purple"
    return "pink"


@dataclass
class ClassSelectivity:
    gamma: np.ndarray        # (C,) NaN where undefined (dead neuron, fewer than 2 images)
    m: np.ndarray            # (C,) M, -1 where undefined
    frequency: np.ndarray    # (C, K) f_c
    count: np.ndarray        # (C, K) top images per class


def class_selectivity(rel: np.ndarray, labels: np.ndarray, n_classes: int, th: float = 1.0) -> ClassSelectivity:
    """γ = (N − M) / (N − 1) over each neuron's top images.

    ``rel``: (C, N) relative activations, NaN for empty slots; ``labels``: (C, N) class ids,
    -1 for empty slots. N counts the images actually kept per neuron.
    """
    c, _ = rel.shape
    valid = labels >= 0
    w = np.where(valid, np.nan_to_num(rel, nan=0.0), 0.0)
    rows = np.broadcast_to(np.arange(c)[:, None], labels.shape)
    weight = np.zeros((c, n_classes))
    count = np.zeros((c, n_classes), dtype=np.int64)
    np.add.at(weight, (rows[valid], labels[valid]), w[valid])
    np.add.at(count, (rows[valid], labels[valid]), 1)
    total = weight.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(total > 0, weight / total, 0.0)
    cumulative = np.cumsum(-np.sort(-freq, axis=1), axis=1)
    # Rounding can leave the cumulative sum a hair under th: M never exceeds the classes present.
    m = np.minimum((cumulative < th - 1e-9).sum(1) + 1, np.maximum((freq > 0).sum(1), 1))
    n = valid.sum(1)
    alive = (total[:, 0] > 0) & (n > 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.where(alive, (n - m) / (n - 1), np.nan)
    return ClassSelectivity(gamma, np.where(alive, m, -1), freq, count)


def curve_area(rel: np.ndarray) -> np.ndarray:
    """Area under the ranked relative-activation curve, rank axis scaled to [0, 1]: mean of w over kept ranks."""
    n = (~np.isnan(rel)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(rel, axis=1) / n, np.nan)
