"""Orientation and symmetry selectivity (docs/science.md §21): how much of a neuron's response to its
top images survives when their receptive-field region is rotated about its centre, or mirrored about
an axis through it.

For each of a neuron's first ``top_n`` top images, the field of the position where the neuron peaked
is transformed (rotations by ``step``, 2·``step``, … 360 − ``step`` degrees; mirrors about the axes
at 0°, 45°, 90° and 135°) and the activation read again at that position. Retention of a transform t
is r(t) = Σ_j max(a_t,j, 0) / Σ_j max(a_j, 0) (the paper's relative activations a / a_max; a_max
cancels). Indexes per neuron: ``orientation_index`` = 1 − mean over the rotations of r(θ) (the
authors' index), ``preferred_angle`` = the rotation other than 0° that keeps most of the response,
``orientation_selectivity`` = |Σ_θ r(θ) e^{2iθ}| / Σ_θ r(θ) over the whole curve (r(0°) = 1), and
``symmetry_index`` = mean over the four axes of their retention.

Cost does not grow with the image: every (image, position) a layer needs is evaluated once, for
every neuron of the layer that peaked there, on the receptive-field-sized box of ``patches.py``
through the network truncated at the layer; a key's transformed boxes go through in one batch, and
boxes of equal shape are batched across keys. Images are read once per layer, in one pass over the
union of the layer's top images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .errors import UsageError
from .network import Network, image_batches
from .patches import LayerGeometry, evaluate, layer_geometry

KINDS = ("orientation", "symmetry")
AXES = (0, 45, 90, 135)     # mirror axes through the field's centre, degrees counter-clockwise from horizontal
ROTATION_STEP = 15          # --rotation-step default, degrees
ROTATION_TOP_N = 20         # --rotation-top-n default
INDEXES = {"orientation": ("orientation_index", "preferred_angle", "orientation_selectivity"),
           "symmetry": ("symmetry_index",)}


@dataclass(frozen=True)
class Transform:
    kind: str     # rotation | mirror
    degrees: int  # rotation: counter-clockwise as displayed (rows grow downwards); mirror: the axis' angle


def check_settings(kinds: list[str], step: int, top_n: int) -> list[str]:
    """The kinds asked for, checked; a bad setting is a usage error before anything is read or written."""
    kinds = list(dict.fromkeys(kinds))
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise UsageError(f"--indexes takes {' and/or '.join(KINDS)}, not {', '.join(bad) or 'nothing'}")
    if "orientation" in kinds and (step < 1 or 360 % step or step > 120):
        raise UsageError(f"--rotation-step must divide 360 and be at most 120 (3 angles or more), not {step}")
    if top_n < 1:
        raise UsageError(f"--rotation-top-n must be at least 1, not {top_n}")
    return kinds


def transforms_for(kinds: list[str], step: int) -> list[Transform]:
    out = []
    if "orientation" in kinds:
        out += [Transform("rotation", a) for a in range(step, 360, step)]
    if "symmetry" in kinds:
        out += [Transform("mirror", a) for a in AXES]
    return out


def margin(size: int) -> int:
    """Context around a field of side ``size`` that a rotation about its centre reads from."""
    return math.ceil((size - 1) / 2 * (math.sqrt(2) - 1)) + 1


def transform_squares(context: torch.Tensor, size: int, transforms: list[Transform]) -> torch.Tensor:
    """(E, T, 3, size, size): the field (the centre ``size`` square of ``context``, (E, 3, q, q) with
    q = size + 2·margin(size)) under each transform, every one about the field's centre.

    The whole image turns, so a rotation's corners show what surrounds the field (the network's zero
    input beyond the image border, as ``context`` holds it). Mirrors and multiples of 90° move pixels
    exactly; 0° and 360° give the field itself; other angles sample bilinearly.
    """
    m = margin(size)
    square = context[:, :, m:m + size, m:m + size]
    out = [None] * len(transforms)
    sampled = []
    for i, t in enumerate(transforms):
        a = t.degrees % 360
        if t.kind == "mirror":
            axis = t.degrees % 180
            out[i] = {0: lambda s: s.flip(-2), 90: lambda s: s.flip(-1),
                      45: lambda s: s.transpose(-2, -1).flip(-2).flip(-1),
                      135: lambda s: s.transpose(-2, -1)}[axis](square) if axis in AXES else None
            if out[i] is None:
                raise ValueError(f"mirror axes are {AXES}, not {t.degrees}")
        elif a % 90 == 0:
            out[i] = torch.rot90(square, a // 90, dims=(-2, -1))
        else:
            sampled.append(i)
    if sampled:
        q = context.shape[-1]
        angles = torch.tensor([math.radians(transforms[i].degrees % 360) for i in sampled],
                              dtype=torch.float64, device=context.device)
        idx = torch.arange(size, dtype=torch.float64, device=context.device) - (size - 1) / 2
        dy, dx = idx.view(1, -1, 1), idx.view(1, 1, -1)
        cos, sin = angles.cos().view(-1, 1, 1), angles.sin().view(-1, 1, 1)
        centre = m + (size - 1) / 2
        src_x = centre + dx * cos - dy * sin       # inverse rotation: where each output pixel comes from
        src_y = centre + dx * sin + dy * cos
        grid = torch.stack([src_x, src_y], dim=-1) * (2 / (q - 1)) - 1     # align_corners=True convention
        grid = grid.reshape(1, len(sampled) * size, size, 2).to(context.dtype).expand(len(context), -1, -1, -1)
        turned = F.grid_sample(context, grid, mode="bilinear", padding_mode="border", align_corners=True)
        turned = turned.view(len(context), 3, len(sampled), size, size)
        for k, i in enumerate(sampled):
            out[i] = turned[:, :, k]
    return torch.stack(out, dim=1)


def cut(images01: torch.Tensor, slots: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, height: int,
        width: int, fill: torch.Tensor) -> torch.Tensor:
    """(E, 3, height, width) windows of ``images01`` (B, 3, H, W) at (top, left) of image ``slots``;
    pixels beyond the image are ``fill`` (the normaliser's mean: zero in the network's input)."""
    device = images01.device
    _, _, h, w = images01.shape
    rows = tops.view(-1, 1) + torch.arange(height, device=device)
    cols = lefts.view(-1, 1) + torch.arange(width, device=device)
    got = images01[slots.view(-1, 1, 1), :, rows.clamp(0, h - 1).unsqueeze(2), cols.clamp(0, w - 1).unsqueeze(1)]
    inside = ((rows >= 0) & (rows < h)).unsqueeze(2) & ((cols >= 0) & (cols < w)).unsqueeze(1)
    got = torch.where(inside.unsqueeze(3), got, fill.to(got.dtype).view(1, 1, 1, 3))
    return got.permute(0, 3, 1, 2)


def transformed_boxes(images01: torch.Tensor, slots: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                      iy: torch.Tensor, ix: torch.Tensor, height: int, width: int, geometry: LayerGeometry,
                      transforms: list[Transform], fill: torch.Tensor) -> torch.Tensor:
    """(E, T, 3, height, width): for keys whose boxes have one shape, the box with the field replaced by
    each transform of it. ``ys``/``xs``: the keys' positions; ``iy``/``ix``: the unit's position in its box."""
    g, s, stride = geometry, geometry.size, geometry.stride
    m = margin(s)
    context = cut(images01, slots, g.offset_y + ys * stride - m, g.offset_x + xs * stride - m, s + 2 * m, s + 2 * m,
                  fill)
    squares = transform_squares(context, s, transforms)                            # (E, T, 3, s, s)
    boxes = cut(images01, slots, (ys - iy) * stride, (xs - ix) * stride, height, width, fill)  # t0 = (y − iy)·S
    out = boxes.unsqueeze(1).repeat(1, len(transforms), 1, 1, 1)
    # The field's corner in the box is offset + i·S: equal for keys with equal (iy, ix).
    for a, b in {(int(u), int(v)) for u, v in zip(iy.tolist(), ix.tolist())}:
        rows = ((iy == a) & (ix == b)).nonzero().flatten()
        dy, dx = g.offset_y + a * stride, g.offset_x + b * stride
        r0, r1, c0, c1 = max(0, dy), min(height, dy + s), max(0, dx), min(width, dx + s)
        if r1 > r0 and c1 > c0:
            out[rows, :, :, r0:r1, c0:c1] = squares[rows][:, :, :, r0 - dy:r1 - dy, c0 - dx:c1 - dx]
    return out


@dataclass
class LayerPlan:
    """The (unit, top image) entries of one layer, and the distinct (image, position) keys they need."""

    geometry: LayerGeometry
    channels: int
    units: np.ndarray        # (E,)
    values: np.ndarray       # (E,) activation a of the top image (the scan's)
    entry_key: np.ndarray    # (E,) index into the keys
    key_image: np.ndarray    # (K,) sorted
    key_y: np.ndarray        # (K,)
    key_x: np.ndarray        # (K,)


def plan_layer(geometry: LayerGeometry, channels: int, units, image_ids, ys, xs, values) -> LayerPlan:
    units, image_ids, ys, xs = (np.asarray(v, dtype=np.int64) for v in (units, image_ids, ys, xs))
    keys, entry_key = np.unique(np.stack([image_ids, ys, xs], 1), axis=0, return_inverse=True)
    keys = keys.reshape(-1, 3)
    return LayerPlan(geometry, channels, units, np.asarray(values, dtype=np.float64), entry_key.reshape(-1),
                     keys[:, 0], keys[:, 1], keys[:, 2])


def run_layer(network: Network, images, plan: LayerPlan, transforms: list[Transform], image_size: int,
              batch_size: int = 64, workers: int = 0, decode: str = "auto", memory: int = 16 << 20,
              bar: tqdm | None = None) -> np.ndarray:
    """(E, T) activations of each entry's unit at its position under each transform, one pass over the
    layer's top images. ``memory``: bytes of input boxes per forward pass (whole keys: T boxes each)."""
    device, g, n_t = network.device, plan.geometry, len(transforms)
    fill = network.mean.view(3)
    out = np.full((len(plan.units), n_t), np.nan)
    order = np.argsort(plan.entry_key, kind="stable")
    starts = np.searchsorted(plan.entry_key[order], np.arange(len(plan.key_image) + 1))
    queues: dict[tuple[int, int], list] = {}

    def flush(shape, force=False):
        parts = queues.get(shape, [])
        queued = sum(len(k) for k, *_ in parts)
        per_pass = max(1, memory // (4 * 3 * shape[0] * shape[1] * n_t))     # keys per forward pass
        if not parts or (queued < per_pass and not force):
            return
        keys = np.concatenate([k for k, *_ in parts])
        boxes, iy, ix = (torch.cat([p[i] for p in parts]) for i in (1, 2, 3))
        queues[shape] = []
        for lo in range(0, len(keys), per_pass):
            chunk = keys[lo:lo + per_pass]
            values = evaluate(network, g.layer, boxes[lo:lo + per_pass].flatten(0, 1),
                              iy[lo:lo + per_pass].repeat_interleave(n_t), ix[lo:lo + per_pass].repeat_interleave(n_t))
            values = values.view(len(chunk), n_t, -1)                          # (k, T, C)
            rows = np.repeat(np.arange(len(chunk)), starts[chunk + 1] - starts[chunk])
            entries = order[np.concatenate([np.arange(starts[k], starts[k + 1]) for k in chunk])]
            got = values[torch.as_tensor(rows, device=values.device), :,
                         torch.as_tensor(plan.units[entries], device=values.device)]
            out[entries] = got.double().cpu().numpy()

    needed = np.unique(plan.key_image).tolist()
    batches = image_batches(images, needed, device, image_size, batch_size, workers, decode)
    with torch.inference_mode():
        for batch in batches:
            if len(batch):
                ids = batch.ids_cpu.numpy()
                lo, hi = np.searchsorted(plan.key_image, [ids[0], ids[-1] + 1])
                ks = np.arange(lo, hi)
                slot = np.searchsorted(ids, plan.key_image[ks])
                ok = ids[np.clip(slot, 0, len(ids) - 1)] == plan.key_image[ks]
                ks, slot = ks[ok], slot[ok]
                boxes = np.array([g.box(int(plan.key_y[k]), int(plan.key_x[k])) for k in ks],
                                 dtype=np.int64).reshape(-1, 6)
                shapes = np.stack([boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]], 1)
                for shape in {tuple(v) for v in shapes.tolist()}:
                    sel = np.flatnonzero((shapes == shape).all(1))
                    kk = ks[sel]
                    on = lambda v: torch.as_tensor(v, device=device)  # noqa: E731
                    made = transformed_boxes(batch.images01, on(slot[sel]), on(plan.key_y[kk]), on(plan.key_x[kk]),
                                             on(boxes[sel, 4]), on(boxes[sel, 5]), shape[0], shape[1], g,
                                             transforms, fill)
                    queues.setdefault(shape, []).append((kk, made, on(boxes[sel, 4]), on(boxes[sel, 5])))
                    flush(shape)
            if bar is not None:
                bar.update(batch.size)
        for shape in list(queues):
            flush(shape, force=True)
    return out


@dataclass
class LayerInvariance:
    """Per neuron of one layer: retention per transform, indexes (NaN where undefined)."""

    retention: np.ndarray          # (C, T)
    n_images: np.ndarray           # (C,) top images used (with a > 0)
    indexes: dict[str, np.ndarray]  # name -> (C,)


def summarise(plan: LayerPlan, activations: np.ndarray, transforms: list[Transform]) -> LayerInvariance:
    """Retention and indexes from the entries' activations (docs/science.md §21)."""
    c = plan.channels
    base = np.zeros(c)
    np.add.at(base, plan.units, np.maximum(plan.values, 0))
    kept = np.zeros((c, len(transforms)))
    np.add.at(kept, plan.units, np.maximum(np.nan_to_num(activations, nan=0.0), 0))
    n_images = np.zeros(c, dtype=np.int64)
    np.add.at(n_images, plan.units, plan.values > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        retention = np.where(base[:, None] > 0, kept / base[:, None], np.nan)
    indexes = {}
    rot = [i for i, t in enumerate(transforms) if t.kind == "rotation"]
    if rot:
        r = retention[:, rot]
        angles = np.array([transforms[i].degrees for i in rot], dtype=np.float64)
        indexes["orientation_index"] = 1 - r.mean(1)
        best = np.argmax(np.nan_to_num(r, nan=-np.inf), axis=1)
        indexes["preferred_angle"] = np.where(np.isnan(r).any(1), np.nan, angles[best])
        curve = np.concatenate([np.ones((c, 1)), r], 1)          # r(0°) = 1
        theta = np.radians(np.concatenate([[0.0], angles]))
        with np.errstate(invalid="ignore", divide="ignore"):
            indexes["orientation_selectivity"] = np.abs(curve @ np.exp(2j * theta)) / curve.sum(1)
    mir = [i for i, t in enumerate(transforms) if t.kind == "mirror"]
    if mir:
        indexes["symmetry_index"] = retention[:, mir].mean(1)
    return LayerInvariance(retention, n_images, indexes)


def layer_tables(model: str, dataset: str, layer: str, result: LayerInvariance,
                 transforms: list[Transform]) -> dict[str, pa.Table]:
    """Rows of ``orientation_tuning`` / ``symmetry_axes`` (live neurons) and ``neuron_indexes`` (every neuron)."""
    c = len(result.n_images)
    live = np.flatnonzero(~np.isnan(result.retention).any(1)) if result.retention.size else np.arange(0)
    out = {}
    for kind, table, column in (("rotation", "orientation_tuning", "angle"), ("mirror", "symmetry_axes", "axis")):
        cols = [i for i, t in enumerate(transforms) if t.kind == kind]
        if not cols:
            continue
        degrees = ([0] if kind == "rotation" else []) + [transforms[i].degrees for i in cols]
        values = result.retention[np.ix_(live, cols)]
        if kind == "rotation":
            values = np.concatenate([np.ones((len(live), 1)), values], 1)
        n = len(live) * len(degrees)
        out[table] = pa.table({
            "model": [model] * n, "dataset": [dataset] * n, "layer": [layer] * n,
            "unit": pa.array(np.repeat(live, len(degrees)), pa.int32()),
            column: pa.array(np.tile(degrees, len(live)), pa.int32()),
            "retention": values.reshape(-1), "n_images": pa.array(np.repeat(result.n_images[live], len(degrees)),
                                                                  pa.int32())})
    names = list(result.indexes)
    values = np.concatenate([result.indexes[nm] for nm in names]) if names else np.zeros(0)
    out["neuron_indexes"] = pa.table({
        "model": [model] * (c * len(names)), "dataset": [dataset] * (c * len(names)),
        "layer": [layer] * (c * len(names)), "unit": np.tile(np.arange(c), len(names)),
        "index": np.repeat(names, c).tolist(),
        "value": pa.array(values, pa.float64(), mask=np.isnan(values))})
    return out


def invariance(network: Network, images, layer_plans: dict[str, LayerPlan], kinds: list[str], step: int,
               image_size: int, batch_size: int = 64, workers: int = 0, decode: str = "auto",
               progress: bool = True, on_layer=None) -> dict[str, LayerInvariance]:
    """Every chosen layer's retention and indexes; ``on_layer(layer, result)`` after each (to store it,
    so a killed run keeps the layers it finished)."""
    transforms = transforms_for(kinds, step)
    total = sum(len(np.unique(p.key_image)) for p in layer_plans.values())
    results = {}
    with tqdm(total=total, desc=" + ".join(kinds), unit="img", disable=not progress) as bar:
        for name, plan in layer_plans.items():
            bar.set_postfix_str(name)
            acts = run_layer(network, images, plan, transforms, image_size, batch_size, workers, decode, bar=bar)
            results[name] = summarise(plan, acts, transforms)
            if on_layer is not None:
                on_layer(name, results[name])
    return results


def analyze_invariance(cat, model: str, kinds: list[str], dataset: str | None = None, layers: list[str] | None = None,
                       top_n: int = ROTATION_TOP_N, step: int = ROTATION_STEP, network=None, device: str | None = None,
                       batch_size: int = 64, resume: bool = False, progress: bool = True) -> dict[str, int]:
    """`neurocat analyze orientation|symmetry`: the indexes of ``kinds`` for the chosen ingested layers
    (default all) from each live neuron's first ``top_n`` top images. Each layer's rows replace the
    old ones as soon as it is done; with ``resume`` a layer that already holds rows of every kind is
    skipped. Every setting and layer is checked before the network runs."""
    from .analyze import images_of, model_of, run_info
    import fnmatch

    kinds = check_settings(kinds, step, top_n)
    info = run_info(cat, model, dataset)
    ds = info["dataset"]
    rows = {r["layer"]: r for r in cat.layers(model, ds).to_pylist()}
    chosen = list(rows)
    if layers:
        chosen = [n for n in rows if any(fnmatch.fnmatchcase(n, p) for p in layers)]
        missing = [p for p in layers if not any(fnmatch.fnmatchcase(n, p) for n in rows)]
        if missing:
            raise UsageError(f"layers {missing} were not ingested for {model!r}; ingested: {', '.join(rows)}")
    no_field = [n for n in chosen if rows[n]["rf_size"] is None or rows[n]["rf_stride"] is None
                or rows[n]["module_type"] == "Linear"]
    if no_field:
        raise UsageError(f"layer {no_field[0]} has no receptive-field information (rf_size); "
                         f"{' and '.join(kinds)} needs a convolutional map with a receptive field")
    if resume:
        done = set(chosen)
        for kind, table in (("orientation", "orientation_tuning"), ("symmetry", "symmetry_axes")):
            if kind in kinds:
                held = {r[0] for r in cat.rows(f"SELECT DISTINCT layer FROM {table} WHERE model = ? AND dataset = ?",
                                               [model, ds])}
                done &= held
        chosen = [n for n in chosen if n not in done]
    net = Network(network or model_of(info), device)
    images = images_of(cat, ds)
    image_size = info["image_size"]
    plans = {}
    for name in chosen:
        r = rows[name]
        tops = cat.top_images(model, ds, name, top=top_n, live=True).to_pylist()
        first = tops[0] if tops else {"crop_top": r["rf_offset"], "crop_left": r["rf_offset"], "y": 0, "x": 0}
        stride = int(r["rf_stride"])
        geometry = layer_geometry(net, name, int(r["rf_size"]), stride, int(first["crop_top"] - first["y"] * stride),
                                  int(first["crop_left"] - first["x"] * stride), image_size)
        plans[name] = plan_layer(geometry, int(r["channels"]), [t["unit"] for t in tops], [t["image_id"] for t in tops],
                                 [t["y"] for t in tops], [t["x"] for t in tops], [t["activation"] for t in tops])
    transforms = transforms_for(kinds, step)
    counts: dict[str, int] = {}

    def store(name, result):
        tables = layer_tables(model, ds, name, result, transforms)
        cat.replace(tables, model, ds, layer=name)
        for t, rows_ in tables.items():
            counts[t] = counts.get(t, 0) + rows_.num_rows

    invariance(net, images, plans, kinds, step, image_size, batch_size, progress=progress, on_layer=store)
    return counts or {"layers": 0}
