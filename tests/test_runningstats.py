import torch

from ingest.runningstats import NO_IMAGE, TopK, TopKGroup


def brute_force(values, k):
    """Per channel: indices of the k largest values, ties to the lower index."""
    out = []
    for c in range(values.shape[1]):
        order = sorted(range(values.shape[0]), key=lambda j: (-values[j, c].item(), j))
        out.append(order[:k])
    return out


def feed(values, batch, k):
    top = TopK(values.shape[1], k)
    for start in range(0, values.shape[0], batch):
        v = values[start:start + batch]
        top.update(v, torch.arange(start, start + len(v)), torch.zeros_like(v, dtype=torch.int64))
    return top


def test_topk_equals_brute_force_with_ties_and_negatives():
    g = torch.Generator().manual_seed(0)
    values = torch.randint(-3, 4, (50, 6), generator=g).float()  # many ties, negatives, zeros
    values[7, 2] = -0.0
    for batch in (1, 7, 50):
        top = feed(values, batch, 10)
        expected = brute_force(values, 10)
        assert top.image_ids.tolist() == expected
        for c in range(6):
            assert top.values[c].tolist() == [values[j, c].item() for j in expected[c]]


def test_fewer_images_than_k_leaves_empty_slots():
    values = torch.tensor([[1.0], [3.0]])
    top = feed(values, 1, 4)
    assert top.image_ids.tolist() == [[1, 0, NO_IMAGE, NO_IMAGE]]
    assert top.values[0, :2].tolist() == [3.0, 1.0]
    assert top.count == 2


def test_merge_of_shards_equals_single_pass_and_drops_duplicates():
    g = torch.Generator().manual_seed(1)
    values = torch.randn(40, 5, generator=g)
    single = feed(values, 8, 6)
    a, b = TopK(5, 6), TopK(5, 6)
    a.update(values[:25], torch.arange(25), torch.zeros(25, 5, dtype=torch.int64))
    b.update(values[15:], torch.arange(15, 40), torch.zeros(25, 5, dtype=torch.int64))  # overlap 15..24
    a.merge(b)
    a.merge(b)  # a retried shard
    assert a.image_ids.tolist() == single.image_ids.tolist()
    assert torch.equal(a.values, single.values)


def test_state_dict_round_trip():
    values = torch.randn(20, 3)
    top = feed(values, 6, 4)
    again = TopK.from_state_dict(top.state_dict())
    assert torch.equal(again.values, top.values) and torch.equal(again.image_ids, top.image_ids)
    assert again.count == 20


def test_buffered_folds_equal_folding_every_batch():
    g = torch.Generator().manual_seed(2)
    values = torch.randint(-2, 3, (300, 7), generator=g).float()  # many ties across batches
    positions = torch.randint(0, 49, (300, 7), generator=g)
    runs = []
    for buffer in (1, 10, 64, 1000):
        top = TopK(7, 12, buffer=buffer)
        for start in range(0, 300, 9):
            top.update(values[start:start + 9], torch.arange(start, min(start + 9, 300)), positions[start:start + 9])
        runs.append(top)
    expected = brute_force(values, 12)
    for top in runs:
        assert top.image_ids.tolist() == expected
        assert torch.equal(top.values, runs[0].values) and torch.equal(top.positions, runs[0].positions)
        assert top.count == 300


def test_layers_folded_together_equal_each_folded_alone():
    """A TopKGroup stacks its members' channels for one key and one topk: every member ends exactly
    as it would alone, ties included, whatever the batch sizes and however often it folds."""
    g = torch.Generator().manual_seed(3)
    widths = (7, 1, 20)
    streams = [torch.randint(-2, 3, (300, c), generator=g).float() for c in widths]  # many ties
    positions = [torch.randint(0, 49, (300, c), generator=g) for c in widths]
    group = TopKGroup()
    together = [TopK(c, 12, buffer=40, group=group) for c in widths]
    alone = [TopK(c, 12, buffer=1) for c in widths]
    start = 0
    while start < 300:
        stop = min(300, start + int(torch.randint(1, 30, (1,), generator=g)))
        ids = torch.arange(start, stop)
        for tops in (together, alone):
            for t, v, p in zip(tops, streams, positions):
                t.update(v[start:stop], ids, p[start:stop])
        group.end_batch()
        start = stop
    assert group.folds >= 300 // 40 - 1  # the members did fold together
    for t, a, v in zip(together, alone, streams):
        assert t.image_ids.tolist() == brute_force(v, 12)
        assert torch.equal(t.values, a.values) and torch.equal(t.positions, a.positions) and t.count == 300


def test_a_member_fed_other_images_folds_alone_and_stays_right():
    group = TopKGroup()
    a, b = TopK(3, 2, buffer=2, group=group), TopK(3, 2, buffer=2, group=group)  # same k and device
    for start in (0, 2):
        a.update(torch.tensor([[1.0, 2, 3], [4, 5, 6]]) + start, torch.arange(start, start + 2),
                 torch.zeros(2, 3, dtype=torch.int64))
        b.update(torch.tensor([[9.0, 9, 9], [0, 0, 0]]), torch.arange(100 + start, 102 + start),
                 torch.zeros(2, 3, dtype=torch.int64))
        group.end_batch()
    assert a.image_ids.tolist() == [[3, 1]] * 3      # its own images (6 and 4), never b's
    assert b.image_ids.tolist() == [[100, 102]] * 3  # ties to the lower id
    assert group.folds == 0


def test_a_scan_whose_batch_fills_the_buffer_still_folds_its_layers_together():
    """Layers' reducers are created by their first output; with a batch as large as the buffer the
    first layer is full before the others exist, which must not leave the layers folding apart."""
    from ingest.network import Batch
    from ingest.record import TopImages

    group = TopKGroup()
    layers = [TopImages(f"l{i}", 5, "cpu", group) for i in range(3)]
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 300, 3, 2, 2, generator=g)  # 4 batches of 300 images > buffer 256
    for b in range(4):
        batch = Batch(torch.arange(b * 300, (b + 1) * 300), torch.arange(b * 300, (b + 1) * 300))
        for layer in layers:
            layer.update(batch, maps[b])
        group.end_batch()
    assert group.folds == 4
    flat = maps.flatten(3).amax(3).reshape(1200, 3)
    for layer in layers:
        assert layer.result().image_ids.tolist() == brute_force(flat, 5)


def test_state_of_a_grouped_member_holds_only_its_own_channels():
    group = TopKGroup()
    small, big = TopK(2, 4, group=group), TopK(5000, 4, group=group)
    ids = torch.arange(3)
    for t in (small, big):
        t.update(torch.rand(3, t.channels), ids, torch.zeros(3, t.channels, dtype=torch.int64))
    group.fold()
    assert group.folds == 1
    state = small.state_dict()
    assert state["values"].untyped_storage().nbytes() == 2 * 4 * 4  # not the 5,002 stacked rows
