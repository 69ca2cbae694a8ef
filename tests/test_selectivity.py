import math

import numpy as np
import pytest
import torch

from ingest.selectivity import class_selectivity, color_name, color_selectivity, curve_area

A, B, C, D = range(4)


def gamma_of(rel, labels, th=1.0, k=4):
    r = class_selectivity(np.array([rel], float), np.array([labels]), k, th)
    return r.gamma[0], r.m[0], r


@pytest.mark.parametrize("th, m, gamma", [(1.0, 3, 1 / 3), (0.8, 2, 2 / 3), (0.75, 1, 1.0)])
def test_gamma_hand_computed(th, m, gamma):
    # weights A: 1 + 0.5, B: 0.3, C: 0.2 of 2.0 -> f = 0.75, 0.15, 0.10; N = 4
    g, got_m, r = gamma_of([1.0, 0.5, 0.3, 0.2], [A, A, B, C], th)
    assert got_m == m
    assert g == pytest.approx(gamma)
    assert r.frequency[0].tolist() == pytest.approx([0.75, 0.15, 0.10, 0.0])
    assert r.count[0].tolist() == [2, 1, 1, 0]


def test_gamma_ties_and_zero_weight_class():
    # f = A .5, B .25, C .25, D 0: th = 1 needs A, B, C (D adds nothing) -> M = 3, γ = 1/3
    g, m, _ = gamma_of([1.0, 0.5, 0.5, 0.0], [A, B, C, D])
    assert (m, g) == (3, pytest.approx(1 / 3))
    g, m, _ = gamma_of([1.0, 0.5, 0.5, 0.0], [A, B, C, D], th=0.6)
    assert (m, g) == (2, pytest.approx(2 / 3))


def test_gamma_empty_slots_and_dead_neuron():
    # Two images kept of four slots: N = 2, one class -> γ = 1
    g, m, _ = gamma_of([1.0, 0.4, np.nan, np.nan], [B, B, -1, -1])
    assert (m, g) == (1, 1.0)
    g, m, _ = gamma_of([np.nan] * 4, [A, B, C, D])  # dead: all relative activations undefined
    assert math.isnan(g) and m == -1


def nf_with(center, surround=(0.5, 0.5, 0.5), size=5, inner=3):
    nf = torch.tensor(surround, dtype=torch.float64).view(3, 1, 1).repeat(1, size, size)
    lo = (size - inner) // 2
    nf[:, lo:lo + inner, lo:lo + inner] = torch.tensor(center, dtype=torch.float64).view(3, 1, 1)
    return nf


def alpha_hue(nf):
    r = color_selectivity(nf.unsqueeze(0), torch.zeros(1, *nf.shape[1:]))
    return r.alpha[0], r.hue[0], r.centred[0]


def test_alpha_uniform_gray_is_zero():
    alpha, _, centred = alpha_hue(torch.full((3, 6, 6), 0.5))
    assert alpha == pytest.approx(0.0, abs=1e-6)
    assert not centred  # uniform NF: mean-colour direction


def test_alpha_red_on_gray_and_its_hue():
    # red − gray = (.5, −.5, −.5): O1 = .707, O2 = .408, O3 = −.289 -> |cos| = 1/3 -> α = acos(1/3)/90°
    alpha, hue, centred = alpha_hue(nf_with((1, 0, 0)))
    assert centred
    assert alpha == pytest.approx(math.degrees(math.acos(1 / 3)) / 90, abs=1e-6)
    assert hue == pytest.approx(30.0, abs=1e-6)  # OPP angle of red: atan2(1/√6, 1/√2)


def test_alpha_achromatic_edge_is_zero_and_uniform_red_uses_mean_colour():
    edge = torch.zeros(3, 6, 6, dtype=torch.float64)
    edge[:, :, 3:] = 1.0
    assert alpha_hue(edge)[0] == pytest.approx(0.0, abs=1e-6)
    alpha, hue, centred = alpha_hue(torch.tensor([1.0, 0, 0]).view(3, 1, 1).repeat(1, 4, 4))
    assert not centred
    assert alpha == pytest.approx(math.degrees(math.acos(1 / math.sqrt(3))) / 90, abs=1e-6)
    assert hue == pytest.approx(30.0, abs=1e-6)


def test_hue_points_at_the_chromatic_pixels():
    # blue on gray: direction blue − gray; blue's OPP angle is atan2(−2/√6, 0) = 270°
    _, hue, _ = alpha_hue(nf_with((0, 0, 1)))
    assert hue == pytest.approx(270.0, abs=1e-6)


def test_pixel_weights_follow_sigma():
    # A pixel that varies wildly across crops (large σ) must barely count.
    nf = nf_with((1, 0, 0), inner=1)
    sigma = torch.zeros(1, 5, 5)
    sigma[0, 2, 2] = 1e3
    r = color_selectivity(nf.unsqueeze(0), sigma)
    assert r.alpha[0] < 0.05  # the red pixel is ignored: the rest is uniform gray


@pytest.mark.parametrize("rgb, name", [((1, 0, 0), "red"), ((0, 0, 1), "blue"), ((0.5, 0.5, 0.5), "gray"),
                                       ((1, 1, 0), "yellow"), ((0.03, 0.03, 0.03), "black"), ((0, 0.8, 0), "green"),
                                       ((1, 0.55, 0), "orange"), ((0.6, 0.1, 0.8), "purple"), ((1, 1, 1), "white")])
def test_color_names(rgb, name):
    assert color_name(rgb) == name


def test_curve_area():
    rel = np.array([[1.0, 0.5, 0.0, np.nan], [np.nan] * 4])
    area = curve_area(rel)
    assert area[0] == pytest.approx(0.5)
    assert np.isnan(area[1])


def test_principal_axis_matches_eigh():
    """The closed-form top eigenvector against float64 eigh: random, degenerate and near-degenerate."""
    from ingest.selectivity import principal_axis

    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, 8, generator=g, dtype=torch.float64)
    rotations, _ = torch.linalg.qr(torch.randn(200, 3, 3, generator=g, dtype=torch.float64))
    near = [rotations @ torch.diag(torch.tensor([0.3, 1 - e, 1.0], dtype=torch.float64)) @ rotations.transpose(1, 2)
            for e in (0.1, 1e-3, 1e-5, 1e-9, 0.0)]
    special = torch.stack([torch.eye(3), torch.zeros(3, 3), torch.diag(torch.tensor([0.0, 0.0, 1.0])),
                           torch.ones(3, 3), torch.diag(torch.tensor([2.0, 1.0, 1.0]))]).double()
    for m in [x @ x.transpose(1, 2), *near, special, (x @ x.transpose(1, 2)).float()]:
        v = principal_axis(m)
        ref = torch.linalg.eigh(m.double())[1][:, :, -1]
        assert v.dtype == torch.float64 and v.shape == (len(m), 3)
        assert torch.allclose(v.norm(dim=1), torch.ones(len(m), dtype=torch.float64), atol=1e-12)
        if m.dtype == torch.float64:  # float32 input: the same axis, up to float32's own eigh (the gap rows)
            assert ((v * ref).sum(1).abs() - 1).abs().max() < 1e-12
        else:
            assert ((v * ref).sum(1).abs() - 1).abs().max() < 1e-6


def test_alpha_leaves_out_the_padding_every_crop_shares():
    """A field larger than the image: most of the NF is the mean-colour fill of every crop, where σ = 0.
    Weighted 1 / ε, those pixels used to decide α alone (the same small value for every such neuron);
    with them left out, α is that of the pixels the crops saw."""
    g = torch.Generator().manual_seed(3)
    patch = torch.rand(3, 6, 6, generator=g, dtype=torch.float64) * torch.tensor([0.9, 0.2, 0.2]).view(3, 1, 1).double()
    patch_sigma = 0.05 + 0.1 * torch.rand(6, 6, generator=g, dtype=torch.float64)
    nf = torch.full((3, 20, 20), 0.45, dtype=torch.float64)
    nf[:, 7:13, 5:11] = patch
    sigma = torch.zeros(20, 20, dtype=torch.float64)
    sigma[7:13, 5:11] = patch_sigma
    seen = torch.zeros(20, 20, dtype=torch.bool)
    seen[7:13, 5:11] = True
    alone = color_selectivity(patch[None], patch_sigma[None]).alpha[0]
    with_fill = color_selectivity(nf[None], sigma[None]).alpha[0]
    left_out = color_selectivity(nf[None], sigma[None], seen[None]).alpha[0]
    assert left_out == pytest.approx(alone, abs=1e-12)
    assert abs(with_fill - alone) > 0.1  # the padding decided it before
    # A neuron with no pixel seen (a field wholly in the padding) keeps every pixel, not NaN.
    none_seen = color_selectivity(nf[None], sigma[None], torch.zeros(1, 20, 20, dtype=torch.bool)).alpha[0]
    assert none_seen == pytest.approx(with_fill)


def test_color_selectivity_in_blocks_equals_the_whole_layer_at_once(monkeypatch):
    from ingest import selectivity

    g = torch.Generator().manual_seed(11)
    nf = torch.rand(9, 3, 6, 6, generator=g)
    nf[4] = 0.5                                        # a uniform NF: the uncentred branch
    sigma = torch.rand(9, 6, 6, generator=g) * 0.2
    seen = torch.rand(9, 6, 6, generator=g) > 0.3
    monkeypatch.setattr(selectivity, "BLOCK_ELEMENTS", 1 << 30)
    whole = color_selectivity(nf, sigma, seen)
    for per_block in (1, 2, 4):                        # neurons per block: 9 is no multiple of 2 or 4
        monkeypatch.setattr(selectivity, "BLOCK_ELEMENTS", per_block * 3 * 6 * 6)
        blocked = color_selectivity(nf, sigma, seen)
        for name in ("alpha", "hue", "centred", "chromatic_rgb"):
            np.testing.assert_allclose(getattr(blocked, name), getattr(whole, name), rtol=0, atol=1e-12)
    assert not whole.centred[4] and whole.centred.sum() == 8


def test_color_selectivity_of_no_neurons_is_empty():
    r = color_selectivity(torch.zeros(0, 3, 4, 4), torch.zeros(0, 4, 4), torch.zeros(0, 4, 4, dtype=torch.bool))
    assert r.alpha.shape == r.hue.shape == r.centred.shape == (0,) and r.chromatic_rgb.shape == (0, 3)
