import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

import catalog
from ingest.data import open_images
from ingest.hierarchy import category_mst, category_tree, filter_tree
from ingest.pipeline import ingest
from tests.conftest import planted_images

A, B, C, D = range(4)


def distances():
    d = np.zeros((4, 4))
    for (i, j), v in {(A, B): 1, (A, C): 2, (B, C): 4, (A, D): 10, (B, D): 12, (C, D): 20}.items():
        d[i, j] = d[j, i] = v
    return d


def test_wpgma_tree_by_hand():
    tree = category_tree(distances())
    # AB at 1; d(AB, C) = (2 + 4)/2 = 3, d(AB, D) = 11; ABC at 3; d(ABC, D) = (11 + 20)/2 = 15.5 (UPGMA: 14)
    assert tree.parent.tolist() == [4, 4, 5, 6, 5, 6, -1]
    assert tree.height.tolist() == [0, 0, 0, 0, 1, 3, 15.5]


def test_wpgma_equals_scipy_weighted_on_random_distances():
    x = np.random.default_rng(0).normal(size=(12, 5))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    tree = category_tree(d)
    z = linkage(squareform(d), method="weighted")
    assert sorted(tree.height[12:].tolist()) == pytest.approx(sorted(z[:, 2].tolist()))


def test_mst_by_hand_and_with_duplicate_classes():
    assert category_mst(distances()) == [(A, B, 1.0), (A, C, 2.0), (A, D, 10.0)]
    d = distances()
    d[A, B] = d[B, A] = 0.0  # identical classes must still be joined
    assert (A, B, 0.0) in category_mst(d)


def test_near_duplicate_classes_are_siblings_at_the_lowest_height(tmp_path, planted_model, fast_options):
    root = planted_images(tmp_path / "data")
    twin = planted_images(tmp_path / "twin", seed=5)
    (twin / "red").rename(root / "red_twin")
    path = tmp_path / "c.duckdb"
    ingest(planted_model, open_images(root), path, "planted", ["0"], fast_options)
    with catalog.open(path) as cat:
        tree = cat.df("SELECT node, parent, height, label FROM category_tree ORDER BY node")
        leaves = tree[tree.label.notna()].set_index("label")
        lowest = tree[tree.label.isna()].sort_values("height").iloc[0]
        assert leaves.loc["red", "parent"] == leaves.loc["red_twin", "parent"] == lowest.node
        near = cat.df("SELECT other_label FROM nearest_classes WHERE label = 'red' AND rank = 1")
        assert near.other_label.tolist() == ["red_twin"]
        assert cat.query("SELECT count(*) FROM category_mst").column(0)[0].as_py() == 3


def test_filter_tree_invariants():
    rng = np.random.default_rng(3)
    vectors = np.abs(rng.normal(size=(25, 10)))
    tree = filter_tree(vectors)
    n = len(tree.parent)
    children = {p: [c for c in range(n) if tree.parent[c] == p] for p in range(25, n)}
    for node, kids in children.items():
        assert len(kids) == 2
        critical = tree.critical[node]
        for kid in kids:
            assert tree.reachable[kid][critical]                         # critical filter in both children
            assert tree.reachable[node].sum() < tree.reachable[kid].sum()  # sets shrink toward the root
            assert not (tree.reachable[node] & ~tree.reachable[kid]).any()
        assert not tree.reachable[node][critical]
    roots = [i for i in range(n) if tree.parent[i] == -1]
    # it stops when no two children of the root share two filters
    for i in roots:
        for j in roots:
            if i < j:
                assert (tree.reachable[i] & tree.reachable[j]).sum() < 2
