"""How sure an index is (docs/science.md §22): γ against the class prior (null mean, Monte Carlo p,
excess), bootstrap intervals of γ and α, the Benjamini-Hochberg view, the ingest options."""
import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import catalog
from ingest import significance
from ingest.cli import app
from ingest.data import open_images
from ingest.models import LoadedModel
from ingest.neuron_feature import Canvases, NeuronFeatureAccumulator, plan_crops
from ingest.pipeline import IngestOptions, ingest
from ingest.receptive_field import ReceptiveField
from ingest.selectivity import class_selectivity, color_selectivity
from ingest.significance import (alpha_interval, alpha_only, centred_interval, class_count, gamma_interval,
                                 gamma_null, gamma_replicates)
from ingest.stimuli import generate
from tests.conftest import planted_images
from tests.planted import DEAD, EDGE, RED, planted

OPTIONS = dict(image_size=32, batch_size=16, workers=0, progress=False, device="cpu")


def random_layer(rng, c, n, population, positive=1.0):
    """Neurons that know nothing of classes: top-image labels drawn from the data set, decreasing weights."""
    labels = population[rng.integers(0, len(population), (c, n))]
    rel = -np.sort(-rng.random((c, n)), axis=1)
    rel = rel / rel[:, :1]
    rel[rng.random((c, n)) > positive] = 0.0
    rel[:, 0] = 1.0
    return rel, labels


# ----------------------------------------------------------------------------------------- M and γ

def test_class_count_is_class_selectivitys_m_for_any_th_and_weights():
    rng = np.random.default_rng(3)
    for _ in range(300):
        c, n, k = 12, int(rng.integers(1, 40)), int(rng.integers(1, 9))
        labels = rng.integers(-1, k, (c, n))
        rel = rng.random((c, n)) * (rng.random((c, n)) < 0.8)
        rel[rng.random((c, n)) < 0.05] = 1e-13          # shares under the 1e-9 tolerance of §5
        rel[rng.random((c, n)) < 0.05] = np.nan
        th = float(rng.choice([1.0, 0.95, 0.8, 0.5]))
        expected = class_selectivity(rel, labels, k, th)
        valid = labels >= 0
        w = np.where(valid, np.nan_to_num(rel), 0.0)
        defined = expected.m > 0
        assert (class_count(labels, w, th)[defined] == expected.m[defined]).all()
        # The observed γ of the test is class_selectivity's γ, on either path (counted or weighted).
        got = gamma_null(rel, labels, np.arange(k), 3, th).gamma
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected.gamma))
        np.testing.assert_allclose(got[defined], expected.gamma[defined], rtol=0, atol=1e-12)


def test_null_mean_matches_the_closed_form_at_th_1():
    # N draws from class frequencies π: E[M] = Σ_k 1 − (1 − π_k)^N, so E[γ] = (N − E[M]) / (N − 1).
    population = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])
    pi = np.bincount(population) / len(population)
    n = 6
    rel = np.ones((1, n))
    labels = np.zeros((1, n), dtype=np.int64)
    expected_m = np.sum(1 - (1 - pi) ** n)
    null = gamma_null(rel, labels, population, 40_000)
    assert null.mean[0] == pytest.approx((n - expected_m) / (n - 1), abs=0.006)   # MC error ~0.0015
    # All six of one class: P(M = 1) = Σ π_k^6.
    assert null.p[0] == pytest.approx(np.sum(pi ** n), abs=0.004)
    assert null.gamma[0] == 1.0 and null.excess[0] == 1.0


def brute_force_null(w, population, th):
    """Exact null of γ: every assignment of labels to the slots, weighted by its probability."""
    classes, counts = np.unique(population, return_counts=True)
    pi = counts / counts.sum()
    n = len(w)
    gammas, probs = [], []
    for combo in itertools.product(range(len(classes)), repeat=n):
        labels = classes[list(combo)][None, :]
        gammas.append(class_selectivity(w[None, :], labels, classes.max() + 1, th).gamma[0])
        probs.append(np.prod(pi[list(combo)]))
    return np.array(gammas), np.array(probs)


@pytest.mark.parametrize("th", [1.0, 0.7])
def test_null_mean_and_p_match_brute_force_on_a_tiny_case(th):
    population = np.repeat([0, 1, 2], [6, 3, 1])
    w = np.array([1.0, 0.8, 0.5, 0.3, 0.0])          # the zero-weight slot never counts
    observed = np.array([0, 0, 1, 0, 2])
    gammas, probs = brute_force_null(w, population, th)
    obs = class_selectivity(w[None, :], observed[None, :], 3, th).gamma[0]
    exact_mean = float(np.sum(gammas * probs))
    exact_p = float(np.sum(probs[gammas >= obs - 1e-12]))
    null = gamma_null(w[None, :], observed[None, :], population, 40_000, th)
    assert null.mean[0] == pytest.approx(exact_mean, abs=0.005)
    assert null.p[0] == pytest.approx(exact_p, abs=0.01)
    assert null.excess[0] == pytest.approx((obs - null.mean[0]) / (1 - null.mean[0]))


def test_random_neurons_on_a_set_dominated_by_one_class_have_high_gamma_but_no_significance():
    rng = np.random.default_rng(7)
    population = np.concatenate([np.zeros(800, dtype=np.int64), np.repeat(np.arange(1, 41), 5)])  # 80 % class 0
    rel, labels = random_layer(rng, 2000, 100, population)
    gamma = class_selectivity(rel, labels, 41, 1.0).gamma
    null = gamma_null(rel, labels, population, 1000)
    assert gamma.mean() > 0.8                              # raw γ looks selective ...
    assert np.mean(null.excess) == pytest.approx(0.0, abs=0.03)   # ... but no more than chance
    assert np.median(null.p) > 0.3 and np.mean(null.p < 0.01) < 0.02


def test_p_values_of_random_neurons_on_a_balanced_set_are_uniform():
    # γ is discrete, so p has atoms: a valid p-value has P(p <= t) = t at each of them and never more
    # than t in between. Two-sided Kolmogorov-Smirnov distance at the atoms when every neuron has the
    # same null (all weights positive); one-sided (p never too small) when the nulls differ.
    rng = np.random.default_rng(11)
    population = np.repeat(np.arange(200), 10)
    rel, labels = random_layer(rng, 4000, 50, population)
    p = gamma_null(rel, labels, population, 2000).p
    atoms = np.unique(p)
    assert len(atoms) >= 8
    ecdf = np.searchsorted(np.sort(p), atoms, side="right") / len(p)
    assert np.max(np.abs(ecdf - atoms)) < 0.05
    rel, labels = random_layer(rng, 4000, 50, population, positive=0.7)
    p = np.sort(gamma_null(rel, labels, population, 2000).p)
    assert np.max(np.arange(1, len(p) + 1) / len(p) - p) < 0.03
    assert np.mean(p <= 0.05) <= 0.05 + 0.015


def test_a_population_without_labels_and_dead_neurons_give_no_test():
    rel = np.array([[1.0, 0.5], [np.nan, np.nan], [0.0, 0.0]])
    labels = np.array([[0, 1], [-1, -1], [0, 0]])
    assert np.isnan(gamma_null(rel, labels, np.array([-1, -1]), 10).p).all()
    null = gamma_null(rel, labels, np.array([0, 1]), 10)
    assert np.isfinite(null.p[0]) and np.isnan(null.p[1:]).all() and np.isnan(null.mean[1:]).all()
    with pytest.raises(ValueError):
        gamma_null(rel, labels, np.array([0, 1]), 0)


# -------------------------------------------------------------------------------------- bootstrap

def test_centred_interval_is_the_estimate_plus_the_deviation_quantiles():
    replicates = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.7, 0.7, 0.7, 0.7, 0.7], [np.nan] * 5])
    lo, hi = centred_interval(np.array([0.25, 0.9, 0.5]), replicates, level=0.5)
    # deviations of row 0: −0.2 … 0.2, quartiles ∓0.1
    np.testing.assert_allclose([lo[0], hi[0]], [0.15, 0.35])
    assert lo[1] == hi[1] == 0.9 and np.isnan(lo[2]) and np.isnan(hi[2])
    lo, hi = centred_interval(np.array([0.98]), np.array([[0.0, 0.5, 1.0]]))
    assert hi[0] == 1.0 and 0 <= lo[0]                      # clipped to [0, 1]


def test_gamma_bootstrap_matches_brute_force_resampling():
    # Resampling n of n slots: the replicates follow the exact multinomial distribution of γ*.
    w = np.array([[1.0, 0.9, 0.6, 0.2]])
    labels = np.array([[0, 0, 1, 2]])
    reps = gamma_replicates(w, labels, 40_000)[0]
    exact = []
    for picks in itertools.product(range(4), repeat=4):
        exact.append(class_selectivity(w[:, picks], labels[:, picks], 3, 1.0).gamma[0])
    for value in np.unique(exact):
        assert np.mean(reps == value) == pytest.approx(np.mean(np.array(exact) == value), abs=0.01)


def test_gamma_interval_shrinks_as_top_n_grows():
    rng = np.random.default_rng(5)
    population = np.concatenate([np.zeros(600, dtype=np.int64), np.repeat(np.arange(1, 21), 20)])
    rel, labels = random_layer(rng, 40, 100, population)
    gamma100 = class_selectivity(rel, labels, 21, 1.0).gamma
    gamma10 = class_selectivity(rel[:, :10], labels[:, :10], 21, 1.0).gamma
    lo100, hi100 = gamma_interval(rel, labels, gamma100, 200)
    lo10, hi10 = gamma_interval(rel[:, :10], labels[:, :10], gamma10, 200)
    assert np.median(hi10 - lo10) > 2.5 * np.median(hi100 - lo100)
    assert (hi100 - lo100 > 0).all()


def crops_of(rng, n, colour, spread, side=8):
    """n crops: a coloured half (around ``colour``, ``spread`` of noise per crop) beside a gray half."""
    crops = np.full((n, 3, side, side), 0.5)
    tint = np.clip(np.asarray(colour)[None, :] + spread * rng.normal(size=(n, 3)), 0, 1)
    crops[:, :, :, : side // 2] = tint[:, :, None, None]
    crops += 0.02 * rng.normal(size=crops.shape)
    return torch.as_tensor(np.clip(crops, 0, 1) * 255 + 0.5).to(torch.uint8)


def nf_alpha(samples, weights, n):
    """α of the full-sample NF at the samples' resolution (the estimate the interval is placed on)."""
    x = samples[:n].double() / 255
    w = weights[:n].double().view(-1, 1, 1, 1)
    nf = (w * x).sum(0) / w.sum()
    sigma = x.std(0, unbiased=False).mean(0)
    return float(color_selectivity(nf[None], sigma[None]).alpha[0])


def test_alpha_only_is_color_selectivitys_alpha():
    torch.manual_seed(0)
    nf = torch.rand(300, 3, 6, 6, dtype=torch.float64)
    nf[:50] = nf[:50, :, :1, :1]                          # uniform NFs: the uncentred branch
    sigma = torch.rand(300, 6, 6, dtype=torch.float64)
    np.testing.assert_allclose(alpha_only(nf, sigma).numpy(), color_selectivity(nf, sigma).alpha, atol=1e-9)


def test_alpha_replicates_are_the_nf_of_the_resampled_crops():
    # With one resample the counts can be read back: the replicate must be α of that weighted NF.
    rng = np.random.default_rng(2)
    samples = crops_of(rng, 12, (0.9, 0.1, 0.1), 0.3)[None]
    weights = torch.as_tensor(rng.uniform(0.7, 1.0, (1, 12)), dtype=torch.float32)
    rep = significance.alpha_replicates(samples, weights, [12], 1, seed=4, key=("k",))[0, 0]
    pick = (significance.generator(4, "alpha-bootstrap", "k", "unit", 0).random((1, 12)) * 12).astype(int)[0]
    x = samples[0, pick].double() / 255
    w = weights[0, pick].double().view(-1, 1, 1, 1)
    nf = (w * x).sum(0) / w.sum()
    sigma = x.std(0, unbiased=False).mean(0)
    assert rep == pytest.approx(float(color_selectivity(nf[None], sigma[None]).alpha[0]), abs=1e-4)


def test_alpha_interval_is_narrow_for_one_colour_and_shrinks_as_top_n_grows():
    rng = np.random.default_rng(1)
    red = crops_of(rng, 100, (0.9, 0.1, 0.1), 0.02)        # every top crop the same red
    mixed = torch.stack([crops_of(rng, 100, (0.8, 0.3, 0.2), 0.15) for _ in range(20)])  # reds that vary
    weights = torch.ones(21, 100)
    samples = torch.cat([red[None], mixed])
    alpha100 = np.array([nf_alpha(s, w, 100) for s, w in zip(samples, weights)])
    alpha10 = np.array([nf_alpha(s, w, 10) for s, w in zip(samples, weights)])
    lo100, hi100 = alpha_interval(samples, weights, [100] * 21, alpha100, 200)
    lo10, hi10 = alpha_interval(samples[:, :10].contiguous(), weights[:, :10], [10] * 21, alpha10, 200)
    assert hi100[0] - lo100[0] < 0.03
    assert lo100[0] <= alpha100[0] <= hi100[0]
    assert np.median(hi100[1:] - lo100[1:]) > 3 * (hi100[0] - lo100[0])
    assert np.median(hi10[1:] - lo10[1:]) > 2 * np.median(hi100[1:] - lo100[1:])   # about √10
    assert np.mean((lo100[1:] <= alpha100[1:]) & (alpha100[1:] <= hi100[1:])) > 0.9
    identical = samples[:1, :1].expand(1, 30, 3, 8, 8).contiguous()   # thirty copies of one crop
    lo, hi = alpha_interval(identical, torch.ones(1, 30), [30], np.array([0.6]), 50)
    assert hi[0] - lo[0] < 1e-5 and lo[0] == pytest.approx(0.6, abs=1e-5)
    assert np.isnan(alpha_interval(identical, torch.ones(1, 30), [1], np.array([0.6]), 50)[0][0])  # one crop


def test_seeded_and_independent_of_blocks_and_layer_mates(monkeypatch):
    rng = np.random.default_rng(9)
    population = np.repeat(np.arange(30), 4)
    rel, labels = random_layer(rng, 60, 40, population, positive=0.9)
    rel[:5, 3] = 1e-12                                     # the weighted path too
    samples = torch.stack([crops_of(rng, 20, (0.3, 0.6, 0.2), 0.2) for _ in range(6)])
    weights = torch.rand(6, 20) * 0.3 + 0.7

    def run(rel=rel, labels=labels, samples=samples, seed=0):
        gamma = class_selectivity(rel, labels, 30, 1.0).gamma
        return (gamma_null(rel, labels, population, 300, 0.9, seed, ("l",)).p,
                gamma_null(rel, labels, population, 300, 1.0, seed, ("l",)).p,
                np.array(gamma_interval(rel, labels, gamma, 50, 1.0, seed, ("l",))),
                np.array(alpha_interval(samples, weights, [20] * 6, np.full(6, 0.5), 50, seed, ("l",))))

    first = run()
    for a, b in zip(first, run()):
        np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(first, run(seed=1)))
    monkeypatch.setattr(significance, "BLOCK", 997)       # tiny blocks: other chunking, same numbers
    monkeypatch.setattr(significance, "TENSOR_BLOCK", 3000)
    for a, b in zip(first, run()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # Other neurons changed: neurons 2 and 3 keep their values.
    mates = np.r_[0:2, 4:60]
    rel2, labels2, samples2 = rel.copy(), labels.copy(), samples.clone()
    rel2[mates] = rel[mates][::-1]
    labels2[mates] = population[rng.integers(0, len(population), labels[mates].shape)]
    samples2[[0, 1, 4, 5]] = samples[[5, 4, 1, 0]]
    for a, b in zip(first, run(rel2, labels2, samples2)):
        np.testing.assert_allclose(a[..., 2:4], b[..., 2:4], rtol=0, atol=1e-6)


def test_kept_crops_are_the_nf_crops_and_weights():
    torch.manual_seed(0)
    rf = ReceptiveField(size=12, stride=2, offset_y=-3, offset_x=-3)
    values = torch.rand(4, 6).sort(dim=1, descending=True).values
    values[3] = -1.0                                        # a dead neuron keeps nothing
    image_ids = torch.stack([torch.randperm(10)[:6] for _ in range(4)])
    positions = torch.randint(0, 64, (4, 6))
    plan = plan_crops("l", rf, 8, values, image_ids, positions, min_rel=0.3, nf_ranks=6, nf_size=12)
    acc = NeuronFeatureAccumulator(plan, "cpu", sample_side=4)
    batch = torch.rand(10, 3, 16, 16)
    fill = torch.full((3,), 0.5)
    acc.add(Canvases([plan], batch[:5], fill), torch.arange(5))
    acc.add(Canvases([plan], batch[5:], fill), torch.arange(5, 10))
    nf, _, n_used = acc.result()
    crops, weights = acc.crop_samples()
    assert crops.shape == (4, int(n_used.max()), 3, 4, 4) and crops.dtype == torch.uint8
    assert ((weights > 0).sum(1) == n_used).all() and n_used[3] == 0
    for u in range(3):
        k = int(n_used[u])
        w = weights[u, :k].view(-1, 1, 1, 1)
        low = (w * crops[u, :k].float() / 255).sum(0) / w.sum()
        expected = torch.nn.functional.adaptive_avg_pool2d(nf[u:u + 1], 4)[0]
        assert (low - expected).abs().max() < 1 / 255 + 1e-5   # area averaging commutes with the mean
    assert NeuronFeatureAccumulator(plan, "cpu").crop_samples() is None


# -------------------------------------------------------------------------------- end to end, SQL

def imbalanced_planted(root, n_red=10, n_other=40):
    planted_images(root, per_class=n_other)
    for path in sorted((root / "red").iterdir())[n_red:]:
        path.unlink()
    return root


def test_planted_class_detector_on_an_imbalanced_set(tmp_path):
    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    images = open_images(imbalanced_planted(tmp_path / "data"))
    ingest(model, images, tmp_path / "c.duckdb", "planted", ["0"], IngestOptions(**OPTIONS))
    with catalog.open(tmp_path / "c.duckdb", read_only=True) as cat:
        rows = {r[0]: r[1:] for r in cat.rows(
            "SELECT unit, gamma, gamma_p, gamma_null_mean, gamma_excess, gamma_lo, gamma_hi, alpha, alpha_lo, "
            "alpha_hi FROM neurons")}
        significant = cat.rows("SELECT unit, gamma_q, n_tests FROM significant_class_neurons")
        mission = cat.rows("SELECT unit FROM neurons WHERE gamma > 0.9 AND gamma_p < 0.01 AND alpha_lo > 0.5")
    gamma, p, mean, excess, g_lo, g_hi, alpha, a_lo, a_hi = rows[RED]
    # Ten red images among ninety: all ten of one class by chance has probability 2·(4/9)^10 + (1/9)^10.
    assert gamma == 1.0 and p < 0.01 and excess == 1.0 and mean < 0.99
    assert g_lo == g_hi == 1.0
    assert a_lo <= alpha <= a_hi and a_hi - a_lo < 1e-4    # the ten crops are the same red square
    assert rows[EDGE][1] > 0.5                              # the edge fires on every class: no evidence
    assert all(v is None for v in rows[DEAD])
    assert [u for u, _, _ in significant] == [RED] and significant[0][2] == 2
    assert mission == [(RED,)]


def test_random_network_on_a_set_where_one_class_holds_80_percent(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "noise"
    for label, count in (("a", 160), ("b", 10), ("c", 10), ("d", 10), ("e", 10)):
        (root / label).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    torch.manual_seed(0)
    model = LoadedModel(torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3)).eval(), "random", "callable", None,
                        (0.5,) * 3, (0.25,) * 3)
    ingest(model, open_images(root), tmp_path / "c.duckdb", "random", ["0"],
           IngestOptions(**{**OPTIONS, "image_size": 16, "top_n": 20, "self_activation": False}))
    with catalog.open(tmp_path / "c.duckdb", read_only=True) as cat:
        gamma, p, excess = np.array(cat.rows("SELECT gamma, gamma_p, gamma_excess FROM neurons WHERE NOT dead")).T
        n_significant = cat.rows("SELECT count(*) FROM significant_class_neurons")[0][0]
    assert len(gamma) > 40 and gamma.mean() > 0.8
    assert np.median(p) > 0.2 and n_significant == 0
    assert abs(excess.mean()) < 0.15


def test_label_columns_get_their_null(tmp_path):
    generate(tmp_path / "demo", variants=1, size=48)        # 5 shapes × 8 hues × 4 textures
    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    ingest(model, open_images(tmp_path / "demo" / "manifest.csv"), tmp_path / "c.duckdb", "planted", ["0"],
           IngestOptions(**{**OPTIONS, "image_size": 48, "top_n": 10}))
    with catalog.open(tmp_path / "c.duckdb", read_only=True) as cat:
        rows = {(u, s): r for u, s, *r in cat.rows(
            "SELECT unit, label_set, gamma, gamma_null_mean, gamma_p, gamma_excess FROM label_selectivity")}
    gamma, mean, p, excess = rows[(RED, "hue")]
    assert gamma == 1.0 and p == pytest.approx(1 / 1001) and excess == 1.0
    assert mean == pytest.approx((10 - 8 * (1 - (7 / 8) ** 10)) / 9, abs=0.01)   # closed form, 8 equal hues
    assert rows[(RED, "texture")][2] > 0.05                # red comes in every texture
    assert rows[(DEAD, "hue")] == [None, None, None, None]


def test_off_means_null_columns_and_no_kept_crops(tmp_path, planted_folder, monkeypatch):
    import ingest.top_images as top_images

    kept = []
    original = top_images.NeuronFeatureAccumulator

    def spy(plan, device, side=0):
        kept.append(side)
        return original(plan, device, side)

    monkeypatch.setattr(top_images, "NeuronFeatureAccumulator", spy)
    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    ingest(model, open_images(planted_folder), tmp_path / "c.duckdb", "planted", ["0"],
           IngestOptions(**OPTIONS, gamma_null_draws=0, bootstrap=0))
    assert kept == [0]
    with catalog.open(tmp_path / "c.duckdb", read_only=True) as cat:
        assert cat.rows("SELECT count(gamma_p), count(gamma_lo), count(alpha_lo), count(gamma) FROM neurons") == [
            (0, 0, 0, 2)]
        names = {r[0] for r in cat.rows('SELECT DISTINCT "index" FROM neuron_indexes')}
    assert not names & {"gamma_p", "gamma_null_mean", "gamma_excess", "gamma_lo", "gamma_hi", "alpha_lo", "alpha_hi"}


def bh_reference(p, level=0.01):
    """Benjamini-Hochberg adjusted p-values, by the book."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 1.0
    for i in range(m - 1, -1, -1):
        running = min(running, p[order[i]] * m / (i + 1))
        adjusted[order[i]] = running
    return adjusted


def test_significant_class_neurons_is_benjamini_hochberg_per_layer(tmp_path):
    from tests.test_views import to_sqlite

    layers = {"a": [0.0001, 0.0045, 0.0046, 0.0047, 0.2],   # step-up: rank 4 passes, so ranks 2-3 do too
              "b": [0.0001, 0.0059, 0.0079, 0.0085, 0.2, 0.9]}  # only rank 1
    with catalog.open(tmp_path / "c.duckdb") as cat:
        for layer, ps in layers.items():
            for unit, p in enumerate(ps):
                cat.con.execute("INSERT INTO units (model, dataset, layer, unit) VALUES ('m', 'd', ?, ?)", [layer, unit])
                cat.con.executemany("INSERT INTO neuron_indexes VALUES ('m', 'd', ?, ?, ?, ?)",
                                    [(layer, unit, "gamma_p", p), (layer, unit, "gamma", 0.9)])
        cat.con.execute("INSERT INTO units (model, dataset, layer, unit) VALUES ('m', 'd', 'a', 9)")  # no test
        cat.refresh_views()
        duck = cat.rows("SELECT layer, unit, gamma_q, n_tests FROM significant_class_neurons ORDER BY layer, unit")
        lite = to_sqlite(cat, str(tmp_path / "c.db")).execute(
            "SELECT layer, unit, gamma_q, n_tests FROM significant_class_neurons ORDER BY layer, unit").fetchall()
    expected = []
    for layer, ps in layers.items():
        q = bh_reference(np.array(ps))
        expected += [(layer, u, q[u], len(ps)) for u in range(len(ps)) if q[u] < 0.01]
    assert [(l, u) for l, u, _, _ in duck] == [("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", 0)]
    for got in (duck, lite):
        assert [(l, u, n) for l, u, _, n in got] == [(l, u, n) for l, u, _, n in expected]
        np.testing.assert_allclose([q for _, _, q, _ in got], [q for _, _, q, _ in expected], rtol=1e-12)


# ------------------------------------------------------------------------------------------- CLI

@pytest.mark.parametrize("option, value", [("--gamma-null-draws", "-1"), ("--bootstrap", "-3"), ("--bootstrap", "1")])
def test_bad_counts_exit_2_with_one_line(tmp_path, planted_folder, option, value):
    result = CliRunner().invoke(app, ["ingest", "--model", "tests.planted:planted", "--layers", "0", "--image-size",
                                      "32", "--workers", "0", "-q", "--data", str(planted_folder), "--catalog",
                                      str(tmp_path / "c.duckdb"), option, value])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], result.output
    assert not (tmp_path / "c.duckdb").exists()
    with pytest.raises(Exception, match=option):
        IngestOptions(**{option.strip("-").replace("-", "_"): int(value)})


def test_cli_options_reach_the_run(tmp_path, planted_folder):
    result = CliRunner().invoke(app, ["ingest", "--model", "tests.planted:planted", "--layers", "0", "--image-size",
                                      "32", "--workers", "0", "-q", "--data", str(planted_folder), "--catalog",
                                      str(tmp_path / "c.duckdb"), "--gamma-null-draws", "99", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    with catalog.open(tmp_path / "c.duckdb", read_only=True) as cat:
        p, lo = cat.rows(f"SELECT gamma_p, gamma_lo FROM neurons WHERE unit = {RED}")[0]
    assert p == pytest.approx(1 / 100) and lo is None
    assert math.isclose(p * 100, 1.0)


def test_alpha_replicates_leave_out_the_unseen_pixels_as_alpha_does():
    rng = np.random.default_rng(7)
    samples = crops_of(rng, 10, (0.8, 0.3, 0.1), 0.3)[None]
    samples[0, :, :, :, :2] = 115                                   # two columns of fill in every crop
    seen = torch.ones(1, samples.shape[-2], samples.shape[-1], dtype=torch.bool)
    seen[0, :, :2] = False
    weights = torch.as_tensor(rng.uniform(0.7, 1.0, (1, 10)), dtype=torch.float32)
    rep = significance.alpha_replicates(samples, weights, [10], 1, seed=1, key=("k",), seen=seen)[0, 0]
    pick = (significance.generator(1, "alpha-bootstrap", "k", "unit", 0).random((1, 10)) * 10).astype(int)[0]
    x = samples[0, pick].double() / 255
    w = weights[0, pick].double().view(-1, 1, 1, 1)
    nf, sigma = (w * x).sum(0) / w.sum(), x.std(0, unbiased=False).mean(0)
    assert rep == pytest.approx(float(color_selectivity(nf[None], sigma[None], seen).alpha[0]), abs=1e-4)
    assert rep != pytest.approx(float(color_selectivity(nf[None], sigma[None]).alpha[0]), abs=1e-2)
