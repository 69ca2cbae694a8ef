import numpy as np
import pytest
from scipy.spatial.distance import cdist

from ingest import analysis_tables as analyses
from ingest.similarity import layer_similarity


def test_matrices_equal_brute_force():
    cof = np.random.default_rng(0).integers(0, 9, (40, 12)).astype(float)
    sim = layer_similarity(cof)
    np.testing.assert_allclose(sim.pearson, np.corrcoef(cof), atol=1e-12)
    np.testing.assert_allclose(sim.euclidean, cdist(cof, cof), atol=1e-9)


def test_top_k_pairs_per_neuron_skip_dead_and_self():
    cof = np.random.default_rng(1).integers(0, 9, (30, 6)).astype(float)
    dead = np.zeros(30, bool)
    dead[7] = True
    t = analyses.similarity("m", "d", {"L": (cof, dead)}, k=3)
    rows = t["similarity_pairs"].to_pylist()
    live = [u for u in range(30) if u != 7]
    corr = np.corrcoef(cof[live])
    for i, a in enumerate(live):
        mine = sorted((r for r in rows if r["unit_a"] == a), key=lambda r: r["rank"])
        order = sorted((j for j in range(len(live)) if j != i), key=lambda j: (-corr[i, j], j))[:3]
        assert [r["unit_b"] for r in mine] == [live[j] for j in order]
    assert all(7 not in (r["unit_a"], r["unit_b"]) for r in rows)
    means = t["layer_similarity"].to_pylist()[0]
    off = ~np.eye(len(live), dtype=bool)
    assert means["mean_pearson"] == pytest.approx(corr[off].mean(), abs=1e-12)
    assert means["n_neurons"] == 29
    full = analyses.similarity("m", "d", {"L": (cof, dead)}, k=None)["similarity_pairs"]
    assert full.num_rows == 29 * 28
