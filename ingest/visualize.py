"""`neurocat visualize` and `neurocat gradcam`: pictures of what neurons respond to, stored in the
``visualizations`` table beside the catalogue's other facts about them."""
from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from catalog import Catalog
from catalog.reading import CatalogLookupError

from . import optvis
from .analysis_tables import png_bytes
from .analyze import images_of, model_of, run_info
from .errors import UsageError
from .gradcam import Target, grad_cam, overlay
from .layers import resolve_layers
from .models import LoadedModel
from .network import Network, image_batches

KINDS = ("channel", "unit", "logit")
COLUMNS = ("model", "dataset", "layer", "unit", "kind", "rank", "image_id", "label", "value", "start_value",
           "params", "png", "created_at")


def parse_units(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    units = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            units += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise UsageError(f"--units takes numbers and ranges like 0-63,100; not {text!r}") from None
    return sorted(set(units))


def item_seed(seed: int, layer: str, unit: int, kind: str) -> int:
    """Each neuron's own seed, so its picture does not depend on which others share its batch."""
    return zlib.crc32(f"{seed}/{layer}/{unit}/{kind}".encode())


def choose_units(cat: Catalog, model: str, dataset: str, layer: str, units: list[int] | None,
                 where: str | None) -> list[int]:
    """The units named, or those of ``layer`` in ``neurons`` matching the SQL condition ``where``."""
    try:
        return cat.select_units(model, dataset, layer, units, where)
    except CatalogLookupError as exc:
        raise UsageError(str(exc)) from None


def _rows(**columns) -> pa.Table:
    n = len(columns["unit"])
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    data = {c: columns.get(c, [None] * n) for c in COLUMNS}
    data["created_at"] = [now] * n
    return pa.table(data, schema=pa.schema([
        ("model", pa.string()), ("dataset", pa.string()), ("layer", pa.string()), ("unit", pa.int64()),
        ("kind", pa.string()), ("rank", pa.int64()), ("image_id", pa.int64()), ("label", pa.string()),
        ("value", pa.float64()), ("start_value", pa.float64()), ("params", pa.string()), ("png", pa.binary()),
        ("created_at", pa.timestamp("us"))]))


def to_png(image: torch.Tensor) -> bytes:
    """(3, H, W) in [0, 1] -> PNG."""
    return png_bytes((image.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8))


def visualize(cat: Catalog, model: str, layer: str, units: list[int] | None = None, where: str | None = None,
              kind: str = "channel", dataset: str | None = None, size: int = 128, steps: int = 256, lr: float = 0.05,
              param: str = "fourier", jitter: int | None = None, degrees: float = 5.0, scale: float = 0.05,
              blur: float = 0.5, l2: float = 0.0, tv: float = 0.0, seed: int = 0, batch_size: int = 32,
              device: str | None = None, network: LoadedModel | None = None, progress: bool = True) -> dict[str, int]:
    """Activation maximisation of many neurons (or class logits), ``batch_size`` at a time, into ``visualizations``."""
    if kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    info = run_info(cat, model, dataset)
    ds = info["dataset"]
    ready = Network(network or model_of(info), device)
    net, device = ready.module, ready.device
    if kind == "logit":
        if where:
            raise UsageError("--where selects neurons; for --kind logit give class indexes with --units")
        if resolve_layers(net, [layer]) != [layer]:
            raise UsageError(f"--layer must name one layer exactly for --kind logit, not a pattern: {layer!r}")
        if units is None:
            raise UsageError("--kind logit needs --units: the class indexes to maximise")
        chosen = units
    else:
        chosen = choose_units(cat, model, ds, layer, units, where)
    transforms = optvis.standard_transforms(size, jitter, degrees, scale, blur)
    make = {"channel": optvis.channel, "unit": optvis.unit, "logit": optvis.logit}[kind]
    params = {"size": size, "steps": steps, "lr": lr, "param": param, "jitter": jitter if jitter is not None
              else max(1, size // 16), "degrees": degrees, "scale": scale, "blur": blur, "l2": l2, "tv": tv,
              "seed": seed, "optimiser": "adam"}
    out = {c: [] for c in ("unit", "value", "start_value", "png")}
    for start in tqdm(range(0, len(chosen), batch_size), desc=f"visualize {layer}", unit="batch",
                      disable=not progress):
        part = chosen[start:start + batch_size]
        result = optvis.render(net, make(layer, part), [item_seed(seed, layer, u, kind) for u in part],
                               ready.inputs, size, steps, lr, param, transforms, l2, tv, device)
        out["unit"] += part
        out["value"] += result.values.double().tolist()
        out["start_value"] += result.start.double().tolist()
        out["png"] += [to_png(image) for image in result.images]
    n = len(out["unit"])
    table = _rows(model=[model] * n, dataset=[ds] * n, layer=[layer] * n, kind=[kind] * n, rank=[0] * n,
                  params=[json.dumps(params)] * n, **out)
    cat.replace({"visualizations": table}, model, ds, layer=layer, kind=kind, unit=out["unit"])
    return {"visualizations": n}


def previous_layer(cat: Catalog, model: str, dataset: str, layer: str) -> str:
    """The ingested layer before ``layer`` (``layer`` itself if it is the first)."""
    rows = cat.layer_names(model, dataset)
    i = rows.index(layer)
    return rows[i - 1] if i > 0 else layer


def gradcam_top_images(cat: Catalog, model: str, layer: str, units: list[int] | None = None, where: str | None = None,
                       top: int = 4, at: str | None = None, dataset: str | None = None, device: str | None = None,
                       network: LoadedModel | None = None, progress: bool = True) -> dict[str, int]:
    """grad-CAM of each chosen neuron (its channel's spatial maximum) on its first ``top`` images,
    seen at layer ``at`` (default: the ingested layer before ``layer``)."""
    info = run_info(cat, model, dataset)
    ds = info["dataset"]
    chosen = choose_units(cat, model, ds, layer, units, where)
    at = at or previous_layer(cat, model, ds, layer)
    ready = Network(network or model_of(info), device)
    tops = cat.top_images(model, ds, layer, units=chosen, top=top, live=True)  # a dead neuron has nothing to explain
    by_image: dict[int, list[tuple[int, int]]] = {}
    for unit, rank, image_id in zip(*(tops.column(c).to_pylist() for c in ("unit", "rank", "image_id"))):
        by_image.setdefault(image_id, []).append((unit, rank))
    params = json.dumps({"at": at, "target": f"max of channel in {layer}", "colormap": "inferno", "opacity": 0.5})
    out = {c: [] for c in ("unit", "rank", "image_id", "value", "png")}
    images = images_of(cat, ds)
    for batch in tqdm(image_batches(images, sorted(by_image), ready.device, info["image_size"], 16, 0),
                      desc="grad-CAM", unit="batch", disable=not progress):
        if batch.pixels is None:
            continue
        x = ready.inputs(batch.images01)
        for i, image_id in enumerate(batch.ids_cpu.tolist()):
            for unit, rank in by_image[image_id]:
                heat, score = grad_cam(ready.module, x[i:i + 1], at, Target(unit, layer))
                picture = overlay(batch.pixels[i].permute(1, 2, 0).cpu().numpy(), heat[0].cpu().numpy())
                for key, value in (("unit", unit), ("rank", rank), ("image_id", image_id),
                                   ("value", float(score[0])), ("png", png_bytes(picture))):
                    out[key].append(value)
    n = len(out["unit"])
    table = _rows(model=[model] * n, dataset=[ds] * n, layer=[layer] * n, kind=["gradcam"] * n,
                  params=[params] * n, **out)
    cat.replace({"visualizations": table}, model, ds, layer=layer, kind="gradcam", unit=chosen)
    return {"visualizations": n}


def gradcam_file(network: LoadedModel, image: Path, layer: str, out: Path, label: int | None = None,
                 channel: int | None = None, channel_layer: str | None = None, image_size: int = 224,
                 device: str | None = None) -> tuple[Path, float, int | None]:
    """grad-CAM overlay of one image file for a class logit (default: the predicted class) or a channel."""
    from .data import model_view, read_rgb

    try:
        pixels = model_view(read_rgb(image), image_size)
    except Exception as exc:  # noqa: BLE001 - any decoding failure
        raise UsageError(f"cannot read {image}: {exc}") from exc
    ready = Network(network, device)
    net = ready.module
    x = ready.inputs(pixels.unsqueeze(0).to(ready.device).float() / 255)
    target = Target(channel, channel_layer or layer) if channel is not None else Target(label, None)
    heat, score = grad_cam(net, x, layer, target)
    predicted = None
    if channel is None and label is None:
        with torch.no_grad():
            predicted = int(net(x).argmax(1)[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png_bytes(overlay(pixels.permute(1, 2, 0).numpy(), heat[0].cpu().numpy())))
    return out, float(score[0]), predicted
