"""One scan state: reducers sharing update / merge / state_dict / load_state_dict; a new statistic is a
few lines, and it is folded by the local scan, by shards + merge and by resume alike."""
import io

import numpy as np
import torch

from ingest.data import model_view, open_images, read_rgb
from ingest.network import Network
from ingest.record import ScanState, record, scan_state


class Brightest:
    """Toy statistic: the id of the brightest image (mean uint8 value), ties to the lower id."""

    layer = None

    def __init__(self):
        self.best = (-1.0, -1)  # (brightness, -id): max picks the brighter, then the lower id

    def update(self, batch, output=None):
        if batch.pixels is not None:
            means = batch.pixels.float().mean(dim=(1, 2, 3)).tolist()
            self.best = max([self.best] + [(m, -i) for m, i in zip(means, batch.ids_cpu.tolist())])

    def merge(self, other):
        self.best = max(self.best, other.best)

    def state_dict(self):
        return {"best": list(self.best)}

    def load_state_dict(self, state):
        self.best = (float(state["best"][0]), int(state["best"][1]))

    def result(self):
        return -self.best[1]


def fresh(images, network, per_image=False):
    return scan_state(["0"], 5, images, "0", network.device, per_image=per_image, chunk=8,
                      extra={"brightest": Brightest()})


def round_trip(state: ScanState, images, network, per_image=False) -> ScanState:
    buffer = io.BytesIO()
    torch.save(state.state_dict(), buffer)
    again = fresh(images, network, per_image)
    again.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    return again


def test_a_toy_reducer_is_folded_by_scan_shards_and_resume(planted_folder, planted_model, fast_options):
    images = open_images(planted_folder)
    network = Network(planted_model, "cpu")
    brightness = [float(model_view(read_rgb(images.absolute(i)), 32).float().mean()) for i in range(len(images))]
    expected = min(range(len(images)), key=lambda i: (-brightness[i], i))

    whole = record(network, images, fresh(images, network), fast_options)
    assert whole["brightest"].result() == expected

    # Two overlapping shards, each through a state_dict as on disk, folded with merge.
    halves = []
    for ids in (range(0, 20), range(10, 30)):
        part = record(network, images, fresh(images, network, per_image=True), fast_options, ids=list(ids))
        halves.append(round_trip(part, images, network, per_image=True))
    merged = halves[0]
    merged.merge(halves[1])
    assert merged["brightest"].result() == expected
    for name in ("top:0",):
        a, b = whole[name].result(), merged[name].result()
        assert torch.equal(a.values, b.values) and torch.equal(a.image_ids, b.image_ids)
        assert torch.equal(a.positions, b.positions)
    assert torch.equal(whole["colour"].result()[0], merged["colour"].result()[0])
    assert whole.n_seen == merged.n_seen == len(images)
    # Class means: the same additions in the same order, so exactly equal.
    assert torch.equal(whole["class_means"].result().sums, merged["class_means"].result().sums)
    assert torch.equal(whole["class_means"].result().counts, merged["class_means"].result().counts)

    # A resumed state (loaded from its state_dict) continues to the same result.
    first = record(network, images, fresh(images, network), fast_options, ids=list(range(13)))
    resumed = record(network, images, round_trip(first, images, network), fast_options, ids=list(range(13, 30)))
    assert resumed["brightest"].result() == expected
    assert torch.equal(resumed["top:0"].result().image_ids, whole["top:0"].result().image_ids)


def test_merge_refuses_states_of_different_reducers(planted_folder, planted_model):
    images = open_images(planted_folder)
    network = Network(planted_model, "cpu")
    a = fresh(images, network)
    b = scan_state(["0"], 5, images, "0", network.device)
    try:
        a.merge(b)
    except ValueError as exc:
        assert "brightest" in str(exc)
    else:
        raise AssertionError("merging states with different reducers must fail")


def test_class_means_match_a_brute_force_mean(planted_folder, planted_model, fast_options):
    images = open_images(planted_folder)
    network = Network(planted_model, "cpu")
    state = record(network, images, fresh(images, network), fast_options)
    x = torch.stack([model_view(read_rgb(images.absolute(i)), 32) for i in range(len(images))]).float() / 255
    with torch.no_grad():
        pooled = planted_model.module(x).mean(dim=(2, 3)).double()
    classes = images.classes
    labels = np.array([classes.index(label) for label in images.labels])
    expected = torch.stack([pooled[torch.from_numpy(labels == k)].mean(0) for k in range(len(classes))])
    assert torch.allclose(state["class_means"].result().result(), expected, atol=1e-6)
