import math

import numpy as np
import pytest

from ingest import analysis_tables as analyses
from ingest.faceted import flatness, gini_sparsity, mf_degree


def test_gini_and_flatness_by_hand():
    rows = np.array([[0, 0, 5, 0], [3, 3, 3, 3], [0, 0, 0, 0], [2, 2, 0, 0], [3, 1, 0, 0]], float)
    s, f = gini_sparsity(rows), flatness(rows)
    assert s[0] == pytest.approx(0.75)      # one-hot: 1 − 1/K
    assert f[0] == pytest.approx(0.0, abs=1e-5)
    assert s[1] == pytest.approx(0.0)       # uniform
    assert f[1] == pytest.approx(1.0)
    assert f[2] == -1.0 and math.isnan(s[2])  # all-zero
    assert s[3] == pytest.approx(0.5)       # shares (0, 0, .5, .5), weights (3.5, 2.5, 1.5, .5)/4
    assert f[3] == pytest.approx(2 ** 0.5 - 1, abs=1e-5)  # H = 1 bit of log2 4 = 2
    assert s[4] == pytest.approx(0.625)
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert f[4] == pytest.approx(2 ** (h / 2) - 1, abs=1e-5)
    assert math.isnan(mf_degree(s, f)[1])   # sparsity 0: degree undefined


def test_mf_degree_zscore_and_labels_on_a_toy_layer():
    cof = np.array([[4, 0, 0, 0], [2, 2, 0, 0], [1, 1, 1, 1], [3, 1, 0, 0], [5, 0, 0, 0]], float)
    dead = np.array([False, False, False, False, True])
    rows = analyses.faceted("m", "d", {"L": (cof, dead)})["neuron_indexes"].to_pylist()
    value = {(r["unit"], r["index"]): r["value"] for r in rows}
    degree = [value[(u, "mf_degree")] for u in range(5)]
    assert degree[0] == pytest.approx(0, abs=1e-5)
    assert degree[1] == pytest.approx((2 ** 0.5 - 1) / 0.5, abs=1e-5)
    assert degree[2] is None and degree[4] is None  # uniform row; dead neuron
    valid = np.array([degree[0], degree[1], degree[3]])
    z = (valid - valid.mean()) / valid.std()
    assert [value[(u, "mf_zscore")] for u in (0, 1, 3)] == pytest.approx(z.tolist())
    assert value[(1, "mf_pvalue")] == pytest.approx(math.erfc(abs(z[1]) / math.sqrt(2)))
    # labels as the neurons view derives them: above the layer mean = multi-faceted
    assert [zz > 0 for zz in z] == [False, True, True]
