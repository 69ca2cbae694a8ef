"""Time the catalogue analyses at realistic sizes (synthetic inputs of the real shapes).

    python benchmarks/analyses.py

Similarity and multi-faceted measures for a 1,280-channel layer over 1,000 classes (ImageNet),
the category hierarchy of 1,000 classes, the filter tree of one class (50 and 300 images of
1,280 filters), and batched vs one-at-a-time FastICA for 64 neurons.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ingest import analysis_tables as analyses
from ingest.hierarchy import filter_tree
from ingest.ica import neuron_components


def timed(label, fn):
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{label:62s} {seconds:8.2f} s")
    return seconds


def main() -> None:
    rng = np.random.default_rng(0)
    cof = rng.multinomial(100, rng.dirichlet(np.full(1000, 0.05), size=1).ravel(), size=1280).astype(float)
    cofs = {"layer": (cof, np.zeros(1280, dtype=bool))}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    timed("similarity, 1,280 neurons × 1,000 classes, top-10", lambda: analyses.similarity("m", "d", cofs, 10))
    timed("multi-faceted measures, same layer", lambda: analyses.faceted("m", "d", cofs))
    vectors = np.abs(rng.normal(size=(1000, 512)))
    timed("category hierarchy + MST, 1,000 classes × 512", lambda: analyses.hierarchy(
        "m", "d", "L", [f"c{i}" for i in range(1000)], vectors, np.ones(1000, dtype=int)))
    for n in (50, 300):
        v = np.abs(rng.normal(size=(n, 1280)))
        timed(f"filter prediction tree, {n} images × 1,280 filters", lambda: filter_tree(v))
    crops = torch.rand(64, 100, 3, 32, 32)
    counts = torch.full((64,), 100)
    batched = timed("ICA, 64 neurons × 100 crops × 4 modes, batched", lambda: neuron_components(crops, counts))
    single = timed("ICA, the same one neuron at a time",
                   lambda: [neuron_components(crops[i:i + 1], counts[i:i + 1]) for i in range(64)])
    print(f"ICA batched speed-up: {single / batched:.2f}x")


if __name__ == "__main__":
    main()
