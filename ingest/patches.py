"""A unit's activation from a receptive-field-sized box of the image through the network truncated at
its layer, instead of the whole image (docs/science.md §21).

A unit at position (y, x) of a layer of stride S sees the input rows ``offset + y·S .. + size`` (its
receptive field, §2). Cut the box of rows ``t0 = (y − i0)·S .. t0 + p`` with ``i0 = ceil(−offset / S)``
and ``p = offset + i0·S + size``: the box's row 0 sits a multiple of S from the image's row 0, so
every layer's grid on the box is the image's grid shifted by whole positions, and the box's unit
``i0`` has the same field, wholly inside the box. Its value is then the full image's, provided the
network's zero padding is reproduced where the field leaves the image: padding at an inner layer is
*not* the network run on zero pixels (a bias or a norm makes that non-zero), so the box is clipped to
the image there (``t0 = 0`` or the box ends at the image's last row) and the network pads the box
exactly as it pads the image. The target unit in the box is ``y − t0/S``.

This holds for convolutions, pools and element-wise layers whose strides divide S (every usual CNN).
``layer_geometry`` does not take it on trust: it compares box and full image on a random image at the
corners, edges and centre of the layer's map, and falls back to the whole image for a layer where they
differ (documented in §21).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .network import Batch, Network, network_pass
from .record import as_maps

# Boxes and full image must agree to this, relative to the largest |activation| of the check: float32
# convolutions pick their algorithm by input size, so equal sums may round differently (~1e-7).
TOLERANCE = 1e-5


@dataclass(frozen=True)
class LayerGeometry:
    """How the positions of one layer are evaluated: on boxes (``patch``) or on the whole image."""

    layer: str
    size: int          # receptive-field side, px
    stride: int
    offset_y: int      # field of position (y, x) starts at row offset_y + y·stride, column offset_x + x·stride
    offset_x: int
    image_size: int    # the model's (square) input side
    out_height: int
    out_width: int
    patch: bool        # False: every position is evaluated on the whole image
    max_error: float = 0.0  # the check's largest |box − full| / max |full| (0.0: bit-identical)

    def _axis(self, pos: int, offset: int, extent: int) -> tuple[int, int, int]:
        """(start, end, index of the unit) of the box along one axis."""
        if not self.patch:
            return 0, extent, pos
        first = -(offset // self.stride) if offset < 0 else 0     # i0 = ceil(−offset / S), at least 0
        length = offset + first * self.stride + self.size         # p
        start = (pos - first) * self.stride
        end = min(extent, start + length)
        start = max(0, start)
        return start, end, pos - start // self.stride

    def box(self, y: int, x: int) -> tuple[int, int, int, int, int, int]:
        """(top, bottom, left, right, iy, ix): the box (exclusive ends, inside the image) and the unit's
        position in the layer's map of the box."""
        t, b, iy = self._axis(y, self.offset_y, self.image_size)
        l, r, ix = self._axis(x, self.offset_x, self.image_size)
        return t, b, l, r, iy, ix

    def field(self, y: int, x: int) -> tuple[int, int]:
        """(top, left) of the receptive field of (y, x), in image pixels (may lie outside the image)."""
        return self.offset_y + y * self.stride, self.offset_x + x * self.stride


def evaluate(network: Network, layer: str, patches01: torch.Tensor, iy, ix) -> torch.Tensor:
    """(B, C) values of ``layer`` on a batch of equal-size [0, 1] boxes, box b read at (iy[b], ix[b])
    (or one (iy, ix) for all), through the pass driver with the network truncated at the layer."""
    got = []
    ids = torch.arange(len(patches01), device=network.device)

    def read(_batch, _layer, out):
        maps = as_maps(out, layer)
        got.append(maps[ids, :, iy, ix].float())

    for _ in network_pass(network, [Batch(ids, ids.cpu(), images01=patches01)], [layer], read, progress=False):
        pass
    return got[0]


def full_maps(network: Network, layer: str, images01: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) output of ``layer`` on whole images, through the pass driver."""
    got = []
    ids = torch.arange(len(images01), device=network.device)
    for _ in network_pass(network, [Batch(ids, ids.cpu(), images01=images01)], [layer],
                          lambda _b, _l, out: got.append(as_maps(out, layer).float()), progress=False):
        pass
    return got[0]


def layer_geometry(network: Network, layer: str, size: int, stride: int, offset_y: int, offset_x: int,
                   image_size: int, seed: int = 0) -> LayerGeometry:
    """The layer's geometry, with box evaluation switched on only where it reproduces the whole image
    (checked on one random image at the map's corners, edge midpoints and centre)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dtype = next((t.dtype for t in network.module.parameters() if t.is_floating_point()), torch.float32)
    image = torch.rand(1, 3, image_size, image_size, generator=gen, dtype=dtype).to(network.device)  # host: seeded, then moved
    full = full_maps(network, layer, image)
    _, _, h, w = full.shape
    geometry = LayerGeometry(layer, size, stride, offset_y, offset_x, image_size, h, w, True)
    if h == 1 and w == 1:  # a single position sees (nearly) everything: nothing to save
        return LayerGeometry(layer, size, stride, offset_y, offset_x, image_size, h, w, False)
    scale = float(full.abs().max()) or 1.0
    groups: dict[tuple, list] = {}
    for y in sorted({0, 1, h // 2, h - 2, h - 1} & set(range(h))):
        for x in sorted({0, 1, w // 2, w - 2, w - 1} & set(range(w))):
            t, b, l, r, iy, ix = geometry.box(y, x)
            groups.setdefault((b - t, r - l, iy, ix), []).append((y, x, t, l))
    if all(k[:2] == (image_size, image_size) for k in groups):  # every box is the whole image
        return LayerGeometry(layer, size, stride, offset_y, offset_x, image_size, h, w, False)
    worst = 0.0
    for (bh, bw, iy, ix), where in groups.items():
        boxes = torch.cat([image[:, :, t:t + bh, l:l + bw] for _, _, t, l in where])
        try:
            values = evaluate(network, layer, boxes, iy, ix)
        except (RuntimeError, IndexError, ValueError):  # a box too small for the network
            worst = float("inf")
            break
        expected = torch.stack([full[0, :, y, x] for y, x, _, _ in where])
        worst = max(worst, float((values - expected).abs().max()) / scale)
    if worst > TOLERANCE:
        return LayerGeometry(layer, size, stride, offset_y, offset_x, image_size, h, w, False, worst)
    return LayerGeometry(layer, size, stride, offset_y, offset_x, image_size, h, w, True, worst)
