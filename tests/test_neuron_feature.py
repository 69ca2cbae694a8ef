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
