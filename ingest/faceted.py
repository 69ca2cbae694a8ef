"""Multi-faceted measures of Sadeghi §2.1, §2.3 on CoF rows (docs/science.md §6)."""
from __future__ import annotations

import math

import numpy as np


def gini_sparsity(rows: np.ndarray) -> np.ndarray:
    """Hurley–Rickard Gini index of each row: 0 for a uniform row, 1 − 1/K for one-hot; NaN for all-zero."""
    rows = np.asarray(rows, dtype=np.float64)
    k = rows.shape[1]
    total = rows.sum(1)
    ranks = np.arange(1, k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.sort(rows, axis=1) / total[:, None]
        g = 1 - 2 * (share * ((k - ranks + 0.5) / k)).sum(1)
    return np.where(total > 0, g, np.nan)


def flatness(rows: np.ndarray) -> np.ndarray:
    """2^(H / log2 K) − 1 of the smoothed row: 1 for uniform, ≈ 0 for one-hot, −1 for an all-zero row."""
    rows = np.asarray(rows, dtype=np.float64)
    k = rows.shape[1]
    if k < 2:
        return np.full(rows.shape[0], np.nan)
    p = rows + 1e-7
    p = p / p.sum(1, keepdims=True)
    h = -(p * np.log2(p)).sum(1)
    return np.where(rows.sum(1) > 0, 2 ** (h / math.log2(k)) - 1, -1.0)


def mf_degree(sparsity: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """flatness / sparsity; NaN where sparsity is 0 (a perfectly uniform row) or undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sparsity > 0, flat / sparsity, np.nan)


def layer_zscores(degree: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-score of each MF degree within its layer and its two-sided normal p-value."""
    ok = ~np.isnan(degree)
    z = np.full(degree.shape, np.nan)
    if ok.sum() >= 2 and degree[ok].std() > 0:
        z[ok] = (degree[ok] - degree[ok].mean()) / degree[ok].std()
    p = np.array([math.erfc(abs(v) / math.sqrt(2)) if not np.isnan(v) else np.nan for v in z])
    return z, p
