"""Neuron similarity of Sadeghi §2.4 (docs/science.md §8): Pearson and Euclidean between CoF rows of a layer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LayerSimilarity:
    pearson: np.ndarray     # (C, C); NaN where a row is constant
    euclidean: np.ndarray   # (C, C)

    def mean_pearson(self) -> float:
        off = ~np.eye(len(self.pearson), dtype=bool) & ~np.isnan(self.pearson)
        return float(self.pearson[off].mean()) if off.any() else float("nan")

    def mean_euclidean(self) -> float:
        off = ~np.eye(len(self.euclidean), dtype=bool)
        return float(self.euclidean[off].mean()) if off.any() else float("nan")

    def top_pairs(self, k: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(unit_a, unit_b) for the k most similar b of each a (all pairs a != b if k is None).

        Order: Pearson descending, NaN last, ties to the lower unit.
        """
        c = len(self.pearson)
        score = np.where(np.isnan(self.pearson), -np.inf, self.pearson)
        np.fill_diagonal(score, -np.inf)
        order = np.lexsort((np.broadcast_to(np.arange(c), (c, c)), -score), axis=1)
        order = order[:, : c - 1] if k is None else order[:, : min(k, c - 1)]
        a = np.repeat(np.arange(c), order.shape[1])
        return a, order.ravel()


def layer_similarity(cof: np.ndarray) -> LayerSimilarity:
    cof = np.asarray(cof, dtype=np.float64)
    centred = cof - cof.mean(1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pearson = (centred @ centred.T) / np.outer(norm, norm)
    sq = (cof * cof).sum(1)
    euclidean = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * cof @ cof.T, 0, None))
    np.fill_diagonal(euclidean, 0.0)
    return LayerSimilarity(np.clip(pearson, -1, 1), euclidean)
