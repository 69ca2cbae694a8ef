"""Clustering of "What do CNN neurons learn" §3 (docs/science.md §9-10): category hierarchy and filter prediction tree."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import squareform


def cosine_distances(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    norm = np.linalg.norm(v, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1 - (v @ v.T) / np.outer(norm, norm)
    d = np.where(np.isnan(d), 1.0, d)  # a zero vector is unrelated to everything
    d = np.clip((d + d.T) / 2, 0, 2)
    np.fill_diagonal(d, 0.0)
    return d


@dataclass
class CategoryTree:
    """Leaves 0..K-1 are the classes; internal node K + i is the i-th merge (WPGMA)."""

    parent: np.ndarray  # (2K-1,) parent node, -1 for the root
    height: np.ndarray  # (2K-1,) merge distance of the node, 0 for leaves


def category_tree(distances: np.ndarray) -> CategoryTree:
    """Greedy agglomeration with the new node's distance the mean of its children's: WPGMA."""
    k = len(distances)
    parent = np.full(2 * k - 1, -1)
    height = np.zeros(2 * k - 1)
    if k < 2:
        return CategoryTree(parent[:k], height[:k])
    merges = linkage(squareform(distances, checks=False), method="weighted")
    for i, (a, b, h, _n) in enumerate(merges):
        parent[int(a)] = parent[int(b)] = k + i
        height[k + i] = h
    return CategoryTree(parent, height)


def category_mst(distances: np.ndarray) -> list[tuple[int, int, float]]:
    """Edges (a, b, distance), a < b, of the minimum spanning tree of the complete class graph."""
    # csgraph reads 0 as "no edge": lift exact zeros (duplicate classes) below every real distance.
    positive = distances[distances > 0]
    graph = np.where(distances > 0, distances, positive.min() / 2 if positive.size else 1.0)
    np.fill_diagonal(graph, 0.0)
    tree = minimum_spanning_tree(graph).tocoo()
    return sorted((int(min(a, b)), int(max(a, b)), float(distances[a, b])) for a, b in zip(tree.row, tree.col))


@dataclass
class FilterTree:
    """Nodes 0..n-1 are the images (all filters reachable); later nodes are merges."""

    parent: list[int]
    critical: list[int | None]      # the critical filter of each merge node
    reachable: list[np.ndarray]     # bool (C,) per node
    distance: list[float]           # merge distance (0 for leaves)
    members: list[int]              # images under each node


def _cosine(a, b, mask) -> float:
    x, y = a[mask], b[mask]
    n = np.linalg.norm(x) * np.linalg.norm(y)
    return 1.0 if n == 0 else 1.0 - float(x @ y) / n


def filter_tree(vectors: np.ndarray) -> FilterTree:
    """Algorithm 2: merge the two closest children of the root until none share two reachable filters.

    A node's vector is the mean of its images' vectors; the distance of two nodes is the cosine
    distance over the filters both can reach. The critical filter of a merge is the shared filter
    whose removal changes that distance most; the new node reaches the shared filters but it.
    """
    v = np.asarray(vectors, dtype=np.float64)
    n, c = v.shape
    vec = [row for row in v]
    reach = [np.ones(c, dtype=bool) for _ in range(n)]
    tree = FilterTree([-1] * n, [None] * n, list(reach), [0.0] * n, [1] * n)
    roots = list(range(n))
    dist = {}  # (i, j) with i < j over current root children

    def pair(i, j):
        shared = reach[i] & reach[j]
        return _cosine(vec[i], vec[j], shared) if shared.sum() >= 2 else np.inf

    for a in range(n):
        for b in range(a + 1, n):
            dist[(a, b)] = pair(a, b)
    while len(roots) > 1:
        (i, j), d = min(dist.items(), key=lambda kv: (kv[1], kv[0]))
        if not np.isfinite(d):
            break
        shared = np.flatnonzero(reach[i] & reach[j])
        x, y = vec[i][shared], vec[j][shared]
        dot, nx, ny = x @ y, x @ x, y @ y
        # cosine distance without each shared filter, all at once
        with np.errstate(invalid="ignore", divide="ignore"):
            without = 1 - (dot - x * y) / np.sqrt((nx - x * x) * (ny - y * y))
        change = np.abs(np.nan_to_num(without, nan=1.0) - d)
        critical = int(shared[int(np.argmax(change))])
        new = len(vec)
        new_reach = reach[i] & reach[j]
        new_reach[critical] = False
        size = tree.members[i] + tree.members[j]
        vec.append((vec[i] * tree.members[i] + vec[j] * tree.members[j]) / size)
        reach.append(new_reach)
        tree.parent[i] = tree.parent[j] = new
        tree.parent.append(-1)
        tree.critical.append(critical)
        tree.reachable.append(new_reach)
        tree.distance.append(float(d))
        tree.members.append(size)
        roots = [r for r in roots if r not in (i, j)]
        dist = {k: val for k, val in dist.items() if i not in k and j not in k}
        for r in roots:
            dist[(r, new)] = pair(r, new)
        roots.append(new)
    return tree
