"""Receptive-field crops for the Neuron Feature (docs/science.md §2-3) against a crop cut by hand."""
import torch
import torch.nn.functional as F

import ingest.neuron_feature as neuron_feature
from ingest.neuron_feature import gather_crops, plan_crops
from ingest.receptive_field import ReceptiveField


def reference_crop(image, fill, top, left, size, nf_size):
    """The field cut from the image padded with ``fill`` on every side, then shrunk to ``nf_size``
    the way gather_crops does (the whole image first, boxes rounded to the shrunk grid)."""
    scale = nf_size / size
    if scale < 1:
        h = max(1, round(image.shape[1] * scale))
        image = F.interpolate(image[None], size=(h, h), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)[0]
        top, left = int(torch.floor(torch.tensor(top * scale + 0.5))), int(torch.floor(torch.tensor(left * scale + 0.5)))
    s = min(size, nf_size)
    out = fill.view(3, 1, 1).expand(3, s, s).clone()
    for y in range(s):
        for x in range(s):
            iy, ix = top + y, left + x
            if 0 <= iy < image.shape[1] and 0 <= ix < image.shape[2]:
                out[:, y, x] = image[:, iy, ix]
    return out


def crops_of(rf, image_ids, positions, out_width, images, fill, nf_size):
    values = torch.linspace(1, 0.5, image_ids.shape[1]).expand(image_ids.shape[0], -1).contiguous()
    plan = plan_crops("l", rf, out_width, values, image_ids, positions, 0.0, image_ids.shape[1], nf_size)
    got = {}
    for idx, crops in gather_crops(plan, images, torch.arange(len(images)), fill):
        for i, crop in zip(idx.tolist(), crops):
            got[i] = crop
    return plan, got


def test_crops_equal_hand_cut_fields_at_every_border_and_chunk_size(monkeypatch):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 20, 20, generator=g)
    fill = torch.tensor([0.1, 0.5, 0.9])
    for rf, out_width, nf_size in ((ReceptiveField(7, 2, -3, -3), 10, 96),   # crops at full size
                                   (ReceptiveField(30, 4, -12, -12), 5, 12)):  # shrunk image
        image_ids = torch.stack([torch.randperm(5, generator=g) for _ in range(4)])
        positions = torch.randint(0, out_width * out_width, (4, 5), generator=g)
        for chunk in (1, 3 * 4 * 12 * 12 * 2, 1 << 30):  # one crop, a few, all at once
            monkeypatch.setitem(neuron_feature.CHUNK_BYTES, "cpu", chunk)
            plan, got = crops_of(rf, image_ids, positions, out_width, images, fill, nf_size)
            assert len(got) == len(plan.units) == 20
            for i in range(len(plan.units)):
                expected = reference_crop(images[plan.image_ids[i]], fill, int(plan.tops[i]), int(plan.lefts[i]),
                                          rf.size, nf_size)
                assert torch.equal(got[i], expected), (rf, i)


def test_a_field_inside_the_padding_is_all_fill():
    """Padding wider than the kernel: the corner position's field lies wholly outside the image."""
    images = torch.rand(1, 3, 8, 8)
    fill = torch.tensor([0.1, 0.5, 0.9])
    rf = ReceptiveField(3, 1, -5, -5)  # kernel 3, padding 5: position (0, 0) sees rows -5..-3
    plan, got = crops_of(rf, torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, dtype=torch.int64), 14,
                         images, fill, 96)
    assert torch.equal(got[0], fill.view(3, 1, 1).expand(3, 3, 3))


def test_accumulated_nf_and_sigma_equal_the_hand_cut_crops_for_layers_sharing_a_canvas(monkeypatch):
    """Two layers of one NF scale share a batch's canvas (padded for the farther-reaching one); each
    neuron's sums, taken in chunks neuron by neuron, equal the weighted mean and σ of its crops cut by hand."""
    g = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 20, 20, generator=g)
    fill = torch.tensor([0.2, 0.4, 0.6])
    layers = {"near": (ReceptiveField(7, 2, -3, -3), 10), "far": (ReceptiveField(9, 4, -8, -8), 5)}
    plans = {}
    for name, (rf, width) in layers.items():
        values = torch.rand(3, 6, generator=g).sort(1, descending=True).values + 0.1
        image_ids = torch.stack([torch.randperm(6, generator=g) for _ in range(3)])
        positions = torch.randint(0, width * width, (3, 6), generator=g)
        plans[name] = plan_crops(name, rf, width, values, image_ids, positions, 0.5, 6, 96)
    border = 0
    for chunk in (1, 1 << 30):
        monkeypatch.setitem(neuron_feature.CHUNK_BYTES, "cpu", chunk)
        accs = {name: neuron_feature.NeuronFeatureAccumulator(p, "cpu") for name, p in plans.items()}
        for ids in (torch.tensor([0, 2, 3]), torch.tensor([1, 4, 5])):
            canvases = neuron_feature.Canvases(list(plans.values()), images[ids], fill)
            for acc in accs.values():
                acc.add(canvases, ids)
            assert len(canvases.built) == 1  # one scale: one canvas for both layers
        for name, p in plans.items():
            nf, sigma, n_used = accs[name].result()
            for unit in range(3):
                mine = (p.units == unit).nonzero().flatten().tolist()
                assert int(n_used[unit]) == len(mine)
                crops = torch.stack([reference_crop(images[p.image_ids[i]], fill, int(p.tops[i]), int(p.lefts[i]),
                                                    p.rf.size, 96) for i in mine])
                w = p.weights[mine].view(-1, 1, 1, 1)
                torch.testing.assert_close(nf[unit], ((w * crops).sum(0) / w.sum()).clamp(0, 1))
                torch.testing.assert_close(sigma[unit], crops.std(0, unbiased=False).mean(0), atol=1e-5, rtol=0)
                # Seen: inside the image in some crop (the same crop cut from an all-ones image, fill 0).
                inside = [reference_crop(torch.ones(3, 20, 20), torch.zeros(3), int(p.tops[i]), int(p.lefts[i]),
                                         p.rf.size, 96)[0] > 0 for i in mine]
                assert torch.equal(accs[name].seen()[unit], torch.stack(inside).any(0))
                border += sum(int((~m).sum()) for m in inside)
    assert border > 0  # some boxes leave the image


def test_shrunk_crops_are_adaptive_average_pooling():
    from ingest.significance import shrink_crops

    for s in (9, 13, 50, 83, 96):
        crops = torch.rand(7, 3, s, s, generator=torch.Generator().manual_seed(s))
        expected = (F.adaptive_avg_pool2d(crops, 8) * 255 + 0.5).to(torch.uint8)
        assert (shrink_crops(crops, 8).int() - expected.int()).abs().max() <= 1  # float rounding at .5 only
    small = torch.rand(2, 3, 5, 5)
    assert torch.equal(shrink_crops(small, 8), (small * 255 + 0.5).to(torch.uint8))


def test_seen_pixels_of_single_crops_are_their_part_inside_the_image():
    g = torch.Generator().manual_seed(5)
    images = torch.rand(4, 3, 20, 20, generator=g)
    for rf, width, nf_size in ((ReceptiveField(9, 4, -8, -8), 5, 96), (ReceptiveField(30, 4, -12, -12), 5, 12)):
        values = torch.ones(25, 1)
        image_ids = torch.arange(25).view(25, 1) % 4
        positions = torch.arange(25).view(25, 1)  # every position of the map, corners and edges included
        plan = plan_crops("l", rf, width, values, image_ids, positions, 0.0, 1, nf_size)
        acc = neuron_feature.NeuronFeatureAccumulator(plan, "cpu")
        acc.add(neuron_feature.Canvases([plan], images, torch.zeros(3)), torch.arange(4))
        seen = acc.seen()
        for i in range(len(plan.units)):
            mask = reference_crop(torch.ones(3, 20, 20), torch.zeros(3), int(plan.tops[i]), int(plan.lefts[i]),
                                  rf.size, nf_size)[0] > 0
            assert torch.equal(seen[plan.units[i]], mask), (rf, i)
        assert not seen.all() and seen.any()


def test_canvases_reuse_the_last_batch_memory_and_equal_fresh_ones():
    g = torch.Generator().manual_seed(8)
    fill = torch.tensor([0.2, 0.5, 0.7])
    rf = ReceptiveField(30, 4, -12, -12)                        # shrunk (NF 12) and reaching past the border
    plan = plan_crops("l", rf, 5, torch.ones(25, 1), torch.arange(25).view(25, 1) % 4,
                      torch.arange(25).view(25, 1), 0.0, 1, 12)
    first = neuron_feature.Canvases([plan], torch.rand(4, 3, 20, 20, generator=g), fill)
    memory = first.for_plan(plan).pixels.data_ptr()
    for b in (4, 3):                                           # a full batch, then a smaller last one
        batch = torch.rand(b, 3, 20, 20, generator=g)
        reused = neuron_feature.Canvases([plan], batch, fill, previous=first)
        fresh = neuron_feature.Canvases([plan], batch, fill)
        assert reused.for_plan(plan).pixels.data_ptr() == memory
        assert torch.equal(reused.for_plan(plan).pixels, fresh.for_plan(plan).pixels)
        first = reused
    n_a, _ = first.scratch(5, 12)
    n_b, w_b = neuron_feature.Canvases([plan], batch, fill, previous=first).scratch(3, 12)
    assert n_b.data_ptr() == n_a.data_ptr() and n_b.shape == w_b.shape == (3, 3, 12, 12)
    other_fill = neuron_feature.Canvases([plan], batch, fill.clone(), previous=first)
    assert other_fill.for_plan(plan).pixels.data_ptr() != memory  # another fill: fresh memory


def test_bootstrap_bins_made_in_inference_mode_serve_outside_it():
    from ingest.significance import _bins, shrink_crops

    _bins.cache_clear()
    crops = torch.rand(2, 3, 24, 24)
    with torch.inference_mode():
        first = shrink_crops(crops, 8)                   # the cached bins are made here
    assert not _bins(24, 8, torch.float32, torch.device("cpu")).is_inference()
    assert torch.equal(shrink_crops(crops, 8), first)
