import numpy as np
import torch

from ingest.ica import fast_ica, neuron_components


def planted_sources(k=4, pixels=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.laplace(size=(pixels, k)) * (rng.random((pixels, k)) < 0.3)  # sparse, far from Gaussian


def test_recovers_planted_sources_up_to_sign_and_order():
    rng = np.random.default_rng(1)
    sources = planted_sources()
    batch = []
    for _ in range(3):  # three neurons at once, each its own mixing of the same sources
        mixing = rng.normal(size=(4, 30))
        batch.append(sources @ mixing)
    found = fast_ica(torch.tensor(np.stack(batch)), 4).numpy()
    for neuron in found:
        corr = np.abs(np.corrcoef(sources.T, neuron.T)[:4, 4:])
        assert sorted(corr.argmax(1).tolist()) == [0, 1, 2, 3]   # a one-to-one match
        assert corr.max(1).min() > 0.98


def test_batched_equals_one_at_a_time():
    x = torch.tensor(np.stack([planted_sources(seed=s) @ np.random.default_rng(s).normal(size=(4, 12))
                               for s in range(3)]))
    together = fast_ica(x, 4)
    for i in range(3):
        torch.testing.assert_close(fast_ica(x[i:i + 1], 4)[0], together[i], atol=1e-8, rtol=1e-6)


def test_fewer_crops_than_components_and_modes():
    crops = torch.rand(3, 10, 3, 6, 6)
    counts = torch.tensor([10, 4, 1])
    out = neuron_components(crops, counts, k=8)
    assert set(out) == {"gray", "red", "green", "blue"}
    assert [c.shape[0] for c in out["gray"]] == [8, 3, 0]
    assert out["red"][0].dtype == torch.uint8 and out["red"][0].shape[1:] == (6, 6)
    assert out["blue"][0].amax().item() == 255 and out["blue"][0].amin().item() == 0
