"""Matching by activations (catalog.compare.unit_matches, layer_cka; docs/science.md §23) against oracles:
a direct NumPy implementation of the CKA formulas, invariances, blockwise = full, and networks whose
answer is known (the same network with its channels permuted; two independently seeded networks)."""
import numpy as np
import pytest
import torch
from torch import nn

from catalog.compare import MATCH_THRESHOLD, best_correlations, layer_cka, standardised, unit_matches


def direct_cka(x, y):
    """Kornblith et al. (2019), Eq. for linear CKA: ‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def direct_hsic1(k, l):
    """Song et al. (2012), the unbiased HSIC estimator, written out term by term."""
    n = len(k)
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def cka(x, y, **kw):
    return layer_cka({"x": x}, {"y": y}, **kw).column("cka")[0].as_py()


def test_cka_equals_the_direct_formula_on_small_random_matrices():
    rng = np.random.default_rng(0)
    for n, p, q in ((20, 5, 7), (50, 30, 3), (12, 40, 40)):
        x = rng.normal(size=(n, p))
        y = x[:, :min(p, q)] @ rng.normal(size=(min(p, q), q)) + rng.normal(size=(n, q))
        assert cka(x, y, estimator="full") == pytest.approx(direct_cka(x, y), rel=1e-4)


def test_unbiased_estimator_equals_the_direct_hsic1_in_one_batch():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 6)), rng.normal(size=(30, 4))
    y[:, 0] += x[:, 0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l = xc @ xc.T, yc @ yc.T
    expected = direct_hsic1(k, l) / np.sqrt(direct_hsic1(k, k) * direct_hsic1(l, l))
    assert cka(x, y, estimator="unbiased", batch=30) == pytest.approx(expected, rel=1e-4)


def test_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling_but_not_to_anisotropic():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 8))
    y = x @ rng.normal(size=(8, 8)) + 0.5 * rng.normal(size=(60, 8))
    base = cka(x, y, estimator="full")
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert cka(x @ q, y, estimator="full") == pytest.approx(base, rel=1e-4)
    assert cka(7.5 * x, y, estimator="full") == pytest.approx(base, rel=1e-4)
    assert cka(x, y, estimator="unbiased", batch=20) == pytest.approx(
        cka(x @ q * 3, y, estimator="unbiased", batch=20), rel=1e-4)
    stretched = x * np.array([10.0, 1, 1, 1, 1, 1, 1, 0.1])
    assert abs(cka(stretched, y, estimator="full") - base) > 0.05


def test_unbiased_minibatch_estimator_close_to_the_full_one_on_a_large_case():
    rng = np.random.default_rng(3)
    n = 6000
    latent = rng.normal(size=(n, 10))
    x = latent @ rng.normal(size=(10, 40)) + rng.normal(size=(n, 40))
    y = latent[:, :5] @ rng.normal(size=(5, 30)) + 2 * rng.normal(size=(n, 30))
    full, unbiased = cka(x, y, estimator="full"), cka(x, y, estimator="unbiased", batch=500)
    assert 0.2 < full < 0.9
    assert unbiased == pytest.approx(full, abs=0.03)
    # "auto" picks the minibatch estimator past one batch
    assert layer_cka({"x": x}, {"y": y}, batch=500).column("estimator")[0].as_py() == "unbiased"


def test_unbiased_minibatch_estimator_equals_per_batch_hsic1_summed_before_the_ratio():
    """An exact oracle of the minibatch estimator: the same seeded order and batches, each batch's HSIC₁
    written out term by term, summed over the batches, then the ratio. n = 1003 with batches of 100
    leaves a remainder of 3 (< 4 images, no HSIC₁), which is folded into the batch before it."""
    rng = np.random.default_rng(5)
    n, batch, seed = 1003, 100, 7
    x = rng.normal(size=(n, 6))
    y = x[:, :3] @ rng.normal(size=(3, 5)) + rng.normal(size=(n, 5))
    order = np.random.default_rng(seed).permutation(n)
    chunks = [order[lo:lo + batch] for lo in range(0, n, batch)]
    assert len(chunks[-1]) == 3
    chunks = chunks[:-2] + [np.concatenate(chunks[-2:])]
    assert [len(c) for c in chunks] == [100] * 9 + [103]
    sums = np.zeros(3)
    for rows in chunks:
        xc, yc = x[rows] - x[rows].mean(0), y[rows] - y[rows].mean(0)
        k, l = xc @ xc.T, yc @ yc.T
        sums += direct_hsic1(k, l), direct_hsic1(k, k), direct_hsic1(l, l)
    expected = sums[0] / np.sqrt(sums[1] * sums[2])
    assert cka(x, y, estimator="unbiased", batch=batch, seed=seed) == pytest.approx(expected, rel=1e-4)


def test_a_constant_layer_has_null_cka_and_is_never_the_most_similar():
    import duckdb

    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 5))
    acts_b = {"dead": np.zeros((40, 3)), "live": x @ rng.normal(size=(5, 4))}
    for estimator in ("full", "unbiased"):
        grid = layer_cka({"x": x}, acts_b, estimator=estimator, batch=20)
        by_layer = dict(zip(grid.column("layer_b").to_pylist(), grid.column("cka").to_pylist()))
        assert by_layer["dead"] is None and by_layer["live"] > 0.5
        assert grid.column("cka").null_count == 1  # NULL, not NaN
        best = duckdb.connect().execute("SELECT layer_b FROM grid ORDER BY cka DESC NULLS LAST LIMIT 1").fetchall()[0][0]
        assert best == "live"


def test_blockwise_best_correlation_equals_the_full_matrix():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(40, 37)), rng.normal(size=(40, 23))
    b[:, :5] += 3 * a[:, 10:15]
    full = np.corrcoef(a.T, b.T)[:37, 37:]
    za, _ = standardised(a)
    zb, _ = standardised(b)
    for block in (1, 4, 7, 64):
        arg_a, best_a, arg_b, best_b = best_correlations(za, zb, block)
        np.testing.assert_array_equal(arg_a, full.argmax(1))
        np.testing.assert_array_equal(arg_b, full.argmax(0))
        np.testing.assert_allclose(best_a, full.max(1), atol=1e-5)
        np.testing.assert_allclose(best_b, full.max(0), atol=1e-5)


def test_constant_units_have_no_match():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(20, 3))
    a[:, 1] = 4.0
    t = unit_matches({"l": a}, {"l": a})
    best = t.filter(np.array(t.column("kind").to_pylist()) == "best").to_pylist()
    assert sorted(r["unit_a"] for r in best if r["model_a"] == "a") == [0, 2]


def test_a_unit_with_an_overflowed_value_has_no_match_and_leaves_the_others_alone():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(20, 3)).astype(np.float16)
    clean = unit_matches({"l": a}, {"l": a})
    a[4, 1] = np.inf  # float16 overflow
    t = unit_matches({"l": a}, {"l": a})
    best = [r for r in t.to_pylist() if r["kind"] == "best" and r["model_a"] == "a"]
    assert sorted(r["unit_a"] for r in best) == [0, 2]
    assert all(r["correlation"] == pytest.approx(1, abs=1e-5) and r["unit_b"] == r["unit_a"] for r in best)
    assert len(clean.to_pylist()) > len(t.to_pylist())


# --- networks with a known answer -------------------------------------------------------------------

def net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 8, 3, padding=1)).eval()


def permuted(model: nn.Sequential, perm0: torch.Tensor, perm2: torch.Tensor) -> nn.Sequential:
    """The same function with conv 0's and conv 2's output channels permuted, and the next conv's
    input channels permuted to match: the last layer's outputs are equal."""
    import copy

    out = copy.deepcopy(model)
    with torch.no_grad():
        out[0].weight.copy_(model[0].weight[perm0])
        out[0].bias.copy_(model[0].bias[perm0])
        out[2].weight.copy_(model[2].weight[perm2][:, perm0])
        out[2].bias.copy_(model[2].bias[perm2])
        out[4].weight.copy_(model[4].weight[:, perm2])
    return out


def activations(model: nn.Sequential, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Spatial max per image of each conv's output: (images × units) per layer."""
    out, x = {}, images
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            if isinstance(module, nn.Conv2d):
                out[name] = x.amax(dim=(2, 3)).numpy()
    return out


@pytest.fixture(scope="module")
def images():
    return torch.rand(200, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_permuted_network_matching_recovers_the_permutation(images):
    a = net(0)
    perm0, perm2 = torch.randperm(12, generator=torch.Generator().manual_seed(1)), \
        torch.randperm(16, generator=torch.Generator().manual_seed(2))
    b = permuted(a, perm0, perm2)
    acts_a, acts_b = activations(a, images), activations(b, images)
    np.testing.assert_allclose(acts_a["4"], acts_b["4"], atol=1e-5)  # the same function
    t = unit_matches(acts_a, acts_b, "a", "b", block=5).to_pylist()
    for layer, perm in (("0", perm0), ("2", perm2)):
        # b's unit j is a's unit perm[j]
        for kind in ("one_to_one", "best"):
            got = {r["unit_a"]: r["unit_b"] for r in t if r["kind"] == kind and r["model_a"] == "a"
                   and r["layer_a"] == layer}
            assert got == {int(perm[j]): j for j in range(len(perm))}, (layer, kind)
            assert all(r["layer_b"] == layer and r["correlation"] == pytest.approx(1, abs=1e-5)
                       for r in t if r["kind"] == kind and r["layer_a"] == layer)
    grid = layer_cka(acts_a, acts_b, "a", "b").to_pylist()
    for r in grid:
        if r["layer_a"] == r["layer_b"]:
            assert r["cka"] == pytest.approx(1, abs=1e-5)
        else:
            assert r["cka"] < 0.999


def test_independently_seeded_networks_share_little(images):
    a, b = net(0), net(1)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    same = layer_cka(activations(a, images), activations(permuted(a, perm, torch.arange(16)), images), "a", "b")
    other = layer_cka(activations(a, images), activations(b, images), "a", "b")
    diag = lambda t: [r["cka"] for r in t.to_pylist() if r["layer_a"] == r["layer_b"]]  # noqa: E731
    assert max(diag(other)) < min(diag(same)) - 0.2
    matches = unit_matches(activations(a, images), activations(b, images), "a", "b").to_pylist()
    assert not [r for r in matches if r["kind"] == "one_to_one" and r["correlation"] > MATCH_THRESHOLD]


def torch_matmul(a, b):
    return (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # host: a test of the hook
            @ torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))).numpy()  # host: a test of the hook


def test_every_product_goes_through_the_matmul_hook_with_the_same_results(images):
    from ingest.matching import device_matmul

    assert device_matmul("cpu") is None  # NumPy's BLAS on the CPU
    calls = []

    def counted(a, b):
        calls.append(1)
        return torch_matmul(a, b)

    acts_a, acts_b = activations(net(0), images), activations(net(1), images)
    for kwargs in ({"estimator": "full"}, {"estimator": "unbiased", "batch": 64}):
        np.testing.assert_allclose(layer_cka(acts_a, acts_b, matmul=counted, **kwargs).column("cka").to_numpy(),
                                   layer_cka(acts_a, acts_b, **kwargs).column("cka").to_numpy(), atol=1e-5)
    hooked, plain = unit_matches(acts_a, acts_b, block=8, matmul=counted), unit_matches(acts_a, acts_b, block=8)
    assert hooked.drop(["correlation"]).equals(plain.drop(["correlation"]))
    np.testing.assert_allclose(hooked.column("correlation").to_numpy(), plain.column("correlation").to_numpy(), atol=1e-5)
    assert calls


@pytest.mark.gpu
def test_the_gpu_gives_the_cpu_matches(images):
    from ingest.matching import device_matmul

    acts_a, acts_b = activations(net(0), images), activations(net(1), images)
    cuda = device_matmul("cuda")
    a, b = unit_matches(acts_a, acts_b, matmul=cuda).to_pylist(), unit_matches(acts_a, acts_b).to_pylist()
    assert [(r["unit_a"], r["unit_b"], r["kind"]) for r in a] == [(r["unit_a"], r["unit_b"], r["kind"]) for r in b]
    np.testing.assert_allclose([r["correlation"] for r in a], [r["correlation"] for r in b], atol=1e-4)
    np.testing.assert_allclose(layer_cka(acts_a, acts_b, matmul=cuda, batch=64).column("cka").to_numpy(),
                               layer_cka(acts_a, acts_b, batch=64).column("cka").to_numpy(), atol=1e-4)
