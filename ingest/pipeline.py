"""`neurocat ingest`: one streaming pass for the top-N, one pass over the top images for crops,
then the indexes, Parquet files, and one transaction into the catalogue."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

import catalog

from . import __version__, analyses, indexes
from .analyses import png_bytes
from .data import LabelledImages, loader
from .errors import UsageError
from .labels import hierarchy_rows
from .layers import resolve_layers
from .models import LoadedModel
from .neuron_feature import ColorDrop, NeuronFeatureAccumulator, plan_crops
from .receptive_field import ReceptiveField, receptive_fields
from .runningstats import ClassMean, TopK
from .taps import LayerTap
from .selectivity import class_selectivity, color_name, color_selectivity, curve_area
from .self_activation import nf_self_activation


@dataclass
class IngestOptions:
    top_n: int = 100
    batch_size: int = 64
    device: str | None = None  # default: cuda when available
    image_size: int = 224
    workers: int | None = None  # DataLoader workers; default from the CPU count
    min_rel: float = 0.7        # docs/science.md §3
    n_max: int = 100            # docs/science.md §3
    nf_max_size: int = 96       # NF side cap, pixels (docs/science.md §2 allows resizing very large fields)
    gamma_th: float = 1.0       # docs/science.md §5
    color_threshold: float = 0.25
    hierarchy_layer: str | None = None  # default: the deepest chosen layer (docs/science.md §9)
    similarity_k: int | None = 10        # None: every pair
    checkpoint_every: int = 50           # batches between checkpoints of the scan (0: none)
    autocast: str | None = None          # scan in bfloat16 or float16 autocast (None: float32)
    channels_last: bool = False          # scan with channels-last memory format
    engine: str = "local"                # local | ray
    address: str | None = None           # Ray cluster address (engine ray); default a local one
    gpus_per_worker: float = 0.0         # engine ray: GPUs per model actor
    progress: bool = True

    def resolved_device(self) -> torch.device:
        if self.device:
            if self.device.startswith("cuda") and not torch.cuda.is_available():
                raise UsageError("--device cuda asked for, but torch sees no CUDA device")
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def resolved_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return min(8, max(1, (os.cpu_count() or 2) // 2))


@dataclass
class LayerInfo:
    name: str
    index: int
    module_type: str
    channels: int = 0
    out_height: int = 0
    out_width: int = 0
    rf: ReceptiveField | None = None


@dataclass
class Scan:
    """What the streaming pass leaves: the reducers and what it learnt of the data."""

    tops: dict[str, TopK]
    layers: dict[str, LayerInfo]
    errors: list[tuple[int, str]] = field(default_factory=list)
    colour_sum: torch.Tensor | None = None  # Σ of uint8 pixel values per channel: exact in any batching
    n_seen: int = 0
    pixels_per_image: int = 1
    hierarchy_layer: str | None = None
    class_mean: ClassMean | None = None  # class representative vectors of hierarchy_layer
    # Shards keep each image's contributions, so overlapping shards merge exactly.
    per_image: dict = field(default_factory=lambda: {"ids": [], "pooled": [], "colour": []})

    def state_dict(self) -> dict:
        """Everything a resumed scan needs: plain tensors, numbers and strings (loads with weights_only)."""
        return {"tops": {n: t.state_dict() for n, t in self.tops.items()},
                "shapes": {n: [i.channels, i.out_height, i.out_width] for n, i in self.layers.items() if i.channels},
                "class_mean": self.class_mean.state_dict() if self.class_mean is not None else None,
                "colour_sum": self.colour_sum.cpu(), "n_seen": self.n_seen,
                "errors": [[i, e] for i, e in self.errors]}

    def load_state_dict(self, state: dict, device, classes: int) -> None:
        self.tops = {n: TopK.from_state_dict(t, device) for n, t in state["tops"].items()}
        for n, (c, h, w) in state["shapes"].items():
            self.layers[n].channels, self.layers[n].out_height, self.layers[n].out_width = c, h, w
        if state["class_mean"] is not None:
            self.class_mean = ClassMean(classes, state["class_mean"]["sums"].shape[1], device)
            self.class_mean.load_state_dict(state["class_mean"])
        self.colour_sum = state["colour_sum"].to(device)
        self.n_seen = int(state["n_seen"])
        self.errors = [(int(i), str(e)) for i, e in state["errors"]]

    @property
    def mean_colour(self) -> torch.Tensor:
        return (self.colour_sum.double() / (255.0 * self.pixels_per_image * max(1, self.n_seen))).float()


@dataclass
class IngestSummary:
    model: str
    dataset: str
    catalog: Path
    images: int
    errors: int
    neurons: int
    layers: int
    seconds: float
    scan_seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.scan_seconds if self.scan_seconds else float("nan")


class Checkpoint:
    """The scan's state on disk, written atomically, valid only for the same run settings."""

    def __init__(self, path: Path, fingerprint: str):
        self.path, self.fingerprint = path, fingerprint

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            warnings.warn(f"ignoring checkpoint {self.path}: it was written with other settings")
            return None
        return state

    def save(self, state: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"fingerprint": self.fingerprint, **state}, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def run_fingerprint(model: LoadedModel, layers: list[str], images: LabelledImages, options: IngestOptions) -> str:
    """What must match for a checkpoint to be resumed (not batch size or device: results do not depend on them)."""
    key = [model.architecture, model.source, str(model.weights), layers, images.fingerprint(), options.top_n,
           options.image_size, options.hierarchy_layer] + [options.autocast] * bool(options.autocast)
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def autocast_context(device: torch.device, dtype: str | None):
    """``torch.autocast`` for ``bfloat16`` / ``float16``, or a no-op. Reductions stay in float32
    (``TopK`` gets ``values.float()``), so only the layer outputs carry the lower precision."""
    import contextlib

    if dtype is None:
        return contextlib.nullcontext()
    if dtype not in ("bfloat16", "float16"):
        raise UsageError(f"--autocast must be bfloat16 or float16, not {dtype!r}")
    return torch.autocast(device.type, dtype=getattr(torch, dtype))


def normaliser(model: LoadedModel, device):
    mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=device).view(1, 3, 1, 1)
    return mean, std


def scan(model: LoadedModel, layer_names: list[str], images: LabelledImages, options: IngestOptions,
         ids: list[int] | None = None, checkpoint: Checkpoint | None = None, per_image: bool = False) -> Scan:
    """The streaming pass: per neuron, the running top-N of spatial maxima, and per class the mean
    pooled output of the hierarchy layer. Memory is O(neurons × N + classes × channels)."""
    device = options.resolved_device()
    net = model.module.to(device).eval()
    if options.channels_last:  # faster convolutions on tensor cores; the same numbers up to rounding
        net = net.to(memory_format=torch.channels_last)
    precision = autocast_context(device, options.autocast)
    types = {n: type(m).__name__ for n, m in net.named_modules()}
    infos = {n: LayerInfo(n, i, types.get(n, "Conv2d")) for i, n in enumerate(layer_names)}
    result = Scan({}, infos, colour_sum=torch.zeros(3, dtype=torch.int64, device=device),
                  pixels_per_image=options.image_size ** 2, hierarchy_layer=options.hierarchy_layer or layer_names[-1])
    tapped = layer_names + [result.hierarchy_layer] * (result.hierarchy_layer not in layer_names)
    class_index = {c: i for i, c in enumerate(images.classes)}
    label_ids = torch.tensor([class_index[label] for label in images.labels], dtype=torch.int64, device=device)
    batch_ids = torch.empty(0, dtype=torch.int64)

    def observe(name, out):
        if name == result.hierarchy_layer and out.dim() in (2, 4):
            pooled = (out if out.dim() == 2 else out.mean(dim=(2, 3))).float()
            if result.class_mean is None:
                result.class_mean = ClassMean(len(class_index), pooled.shape[1], device)
            result.class_mean.update(pooled, label_ids[batch_ids])
            if per_image:
                result.per_image["pooled"].append(pooled.float().cpu())
            if name not in infos:
                return
        if not isinstance(out, torch.Tensor) or out.dim() not in (2, 4):
            raise UsageError(f"layer {name} outputs {type(out).__name__} "
                             f"{tuple(getattr(out, 'shape', ()))}; a layer must output (batch, channels[, h, w])")
        if out.dim() == 2:
            out = out[:, :, None, None]
        if name not in result.tops:
            info = infos[name]
            info.channels, info.out_height, info.out_width = out.shape[1:]
            result.tops[name] = TopK(info.channels, options.top_n, device)
        values, positions = out.flatten(2).max(dim=2)
        result.tops[name].update(values.float(), batch_ids, positions)

    mean, std = normaliser(model, device)
    todo = list(range(len(images))) if ids is None else list(ids)
    done = 0  # positions of `todo` already scanned
    if checkpoint is not None:
        state = checkpoint.load()
        if state is not None:
            result.load_state_dict(state["scan"], device, len(class_index))
            done = int(state["done"])
    batches = loader(images, options.image_size, options.batch_size, options.resolved_workers(), todo[done:],
                     pin_memory=device.type == "cuda")
    with LayerTap(net, tapped) as tap, torch.inference_mode(), \
            tqdm(total=len(todo), initial=done, desc="scan", unit="img", disable=not options.progress) as bar:
        for step, (batch, ids_cpu, errors) in enumerate(batches, start=1):
            result.errors.extend(errors)
            if batch is not None:
                batch = batch.to(device, non_blocking=True)
                colour = batch.sum(dim=(2, 3), dtype=torch.int64)
                result.colour_sum += colour.sum(0)
                if per_image:
                    result.per_image["ids"].append(ids_cpu)
                    result.per_image["colour"].append(colour.cpu())
                result.n_seen += len(ids_cpu)
                batch_ids = ids_cpu.to(device, non_blocking=True)
                x = (batch.float().div_(255) - mean) / std
                if options.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with precision:
                    tap.run(x, observe)
            done += len(ids_cpu) + len(errors)
            bar.update(len(ids_cpu) + len(errors))
            if checkpoint is not None and options.checkpoint_every and step % options.checkpoint_every == 0:
                checkpoint.save({"done": done, "scan": result.state_dict()})
    if checkpoint is not None:  # a run killed later (crops, indexes, load) resumes after the scan
        checkpoint.save({"done": done, "scan": result.state_dict()})
    if result.n_seen == 0:
        raise UsageError(f"none of the {len(batches.dataset)} images could be read; first error: "
                         f"{result.errors[0][1] if result.errors else 'none'}")
    return result


def neuron_features(model: LoadedModel, images: LabelledImages, scan_result: Scan, options: IngestOptions):
    """Crops of every layer's top images in one pass over their union, and the same images made gray
    through the network for the colour drop; returns {layer: (nf, σ, n_used, nf_size, colour drop)}."""
    device = options.resolved_device()
    plans = []
    for name, top in scan_result.tops.items():
        info = scan_result.layers[name]
        plans.append(plan_crops(name, info.rf, info.out_width, top.values, top.image_ids, top.positions,
                                options.min_rel, options.n_max, options.nf_max_size))
    accumulators = [NeuronFeatureAccumulator(p, device) for p in plans]
    drops = {p.layer: ColorDrop(p, scan_result.tops[p.layer].values[:, 0].clamp(min=0), device) for p in plans}
    needed = sorted(set(torch.cat([p.image_ids for p in plans]).tolist())) if plans else []
    fill = scan_result.mean_colour.to(device)
    net = model.module.to(device).eval()
    mean, std = normaliser(model, device)
    batches = loader(images, options.image_size, options.batch_size, options.resolved_workers(), needed,
                     pin_memory=device.type == "cuda")
    with torch.inference_mode(), LayerTap(net, list(drops)) as tap, \
            tqdm(total=len(needed), desc="crops", unit="img", disable=not options.progress) as bar:
        for batch, batch_ids, errors in batches:
            scan_result.errors.extend((i, f"unreadable when cropping: {e}") for i, e in errors)
            bar.update(len(batch_ids) + len(errors))
            if batch is None:
                continue
            x = batch.to(device, non_blocking=True).float().div_(255)
            for acc in accumulators:
                acc.add(x, batch_ids, fill)
            if drops:
                tap.run((ColorDrop.grayscale(x) - mean) / std, lambda name, out: drops[name].add(out, batch_ids))
    return {acc.plan.layer: acc.result() + (acc.plan.nf_size, drops[acc.plan.layer].result())
            for acc in accumulators}


def build_tables(model_name: str, model: LoadedModel, images: LabelledImages, scan_result: Scan, features,
                 options: IngestOptions, seconds: float, listing_problems) -> dict[str, pa.Table]:
    """The run's rows, as Arrow tables named like the catalogue's tables."""
    ds = images.name
    classes = images.classes
    class_index = {c: i for i, c in enumerate(classes)}
    label_ids = np.array([class_index[label] for label in images.labels], dtype=np.int64)
    rows: dict[str, dict[str, list]] = {t: {} for t in
                                        ("layers", "units", "neuron_indexes", "top_images", "class_frequencies",
                                         "label_selectivity", "label_frequencies")}
    plugins = indexes.registered()
    label_sets = {}  # extra label columns: (values, per-image ids, -1 where empty)
    for label_set, values in images.extra_labels.items():
        names = sorted({v for v in values if v})
        position = {v: i for i, v in enumerate(names)}
        label_sets[label_set] = (names, np.array([position.get(v, -1) for v in values], dtype=np.int64))

    def put(table, **cols):
        for k, v in cols.items():
            rows[table].setdefault(k, []).append(v)

    def extend(table, **cols):
        for k, v in cols.items():
            rows[table].setdefault(k, []).extend(v.tolist() if isinstance(v, np.ndarray) else v)

    device = options.resolved_device()
    net = model.module.to(device).eval()
    fill = scan_result.mean_colour.to(device)
    mean, std = normaliser(model, device)
    n_neurons = 0
    for name, top in tqdm(scan_result.tops.items(), desc="indexes", unit="layer", disable=not options.progress):
        info = scan_result.layers[name]
        nf, sigma, n_used, nf_size, color_drop = features[name]
        values = top.values.cpu().double().numpy()
        ids = top.image_ids.cpu().numpy()
        pos = top.positions.cpu().numpy().astype(np.int64)
        c, k = values.shape
        n_neurons += c
        valid = ids >= 0
        a_max = values[:, 0]
        alive = a_max > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(valid & alive[:, None], np.maximum(values, 0) / a_max[:, None], np.nan)
        labels = np.where(valid, label_ids[np.clip(ids, 0, None)], -1)
        gamma = class_selectivity(rel, labels, len(classes), options.gamma_th)
        color = color_selectivity(nf.cpu(), sigma.cpu())
        n_used = n_used.cpu().numpy()
        has_nf = alive & (n_used > 0)
        alpha = np.where(has_nf, color.alpha, np.nan)
        area = np.where(alive, curve_area(rel), np.nan)
        self_act = nf_self_activation(net, name, nf, has_nf, a_max, info.rf, info.out_height, info.out_width,
                                      options.image_size, fill, lambda x: (x - mean) / std, options.batch_size)
        nf_u8 = (nf.cpu().permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)

        rf = info.rf
        put("layers", model=model_name, dataset=ds, layer=name, layer_index=info.index, module_type=info.module_type,
            channels=c, out_height=info.out_height, out_width=info.out_width, rf_size=rf.size, rf_stride=rf.stride,
            rf_offset=rf.offset_y, nf_size=nf_size, n_dead=int((~alive).sum()))
        units = np.arange(c)
        extend("units", model=[model_name] * c, dataset=[ds] * c, layer=[name] * c, unit=units,
               a_max=np.where(valid[:, 0], a_max, np.nan), n_top=valid.sum(1), dead=~alive,
               nf_png=[png_bytes(nf_u8[u]) if has_nf[u] else None for u in range(c)],
               nf_n_used=n_used,
               hue=np.where(has_nf, color.hue, np.nan),
               color_name=[color_name(color.chromatic_rgb[u]) if has_nf[u] and alpha[u] >= options.color_threshold
                           else None for u in range(c)],
               alpha_method=[("centred" if color.centred[u] else "uncentred") if has_nf[u] else None for u in range(c)],
               gamma_m=[int(m) if m > 0 else None for m in gamma.m])
        for index, vals in (("alpha", alpha), ("gamma", gamma.gamma), ("curve_area", area),
                             ("nf_self_activation", self_act),
                             ("color_drop", np.where(has_nf, color_drop.cpu().double().numpy(), np.nan))):
            extend("neuron_indexes", model=[model_name] * c, dataset=[ds] * c, layer=[name] * c, unit=units,
                   index=[index] * c, value=vals)
        uu, rr = np.nonzero(valid)
        ys, xs = pos[uu, rr] // info.out_width, pos[uu, rr] % info.out_width
        with np.errstate(invalid="ignore"):
            in_nf = alive[uu] & (rel[uu, rr] >= options.min_rel) & (rr < options.n_max)
        extend("top_images", model=[model_name] * len(uu), dataset=[ds] * len(uu), layer=[name] * len(uu),
               unit=uu, rank=rr, image_id=ids[uu, rr], activation=values[uu, rr], rel_activation=rel[uu, rr],
               y=ys, x=xs, crop_top=rf.offset_y + ys * rf.stride, crop_left=rf.offset_x + xs * rf.stride,
               crop_size=[rf.size] * len(uu), in_nf=in_nf)
        layer_data = indexes.LayerData(model_name, name, nf_u8.astype(np.float64) / 255, has_nf,
                                       np.where(valid[:, 0], a_max, np.nan), rel, labels, classes)
        for index, vals in indexes.compute(plugins, layer_data, strict=False).items():
            extend("neuron_indexes", model=[model_name] * c, dataset=[ds] * c, layer=[name] * c, unit=units,
                   index=[index] * c, value=vals)
        for label_set, (names, per_image) in label_sets.items():
            set_labels = np.where(valid, per_image[np.clip(ids, 0, None)], -1)
            sel = class_selectivity(rel, set_labels, len(names), options.gamma_th)
            top = sel.frequency.argmax(1)
            live = sel.m > 0
            extend("label_selectivity", model=[model_name] * c, dataset=[ds] * c, layer=[name] * c, unit=units,
                   label_set=[label_set] * c, gamma=sel.gamma, m=[int(m) if m > 0 else None for m in sel.m],
                   top_label=[names[t] if ok else None for t, ok in zip(top, live)],
                   top_frequency=np.where(live, sel.frequency[units, top], np.nan))
            lu, ll = np.nonzero(sel.count)
            extend("label_frequencies", model=[model_name] * len(lu), dataset=[ds] * len(lu),
                   layer=[name] * len(lu), unit=lu, label_set=[label_set] * len(lu), label=[names[i] for i in ll],
                   count=sel.count[lu, ll], frequency=sel.frequency[lu, ll])
        cu, cl = np.nonzero(gamma.count)
        extend("class_frequencies", model=[model_name] * len(cu), dataset=[ds] * len(cu), layer=[name] * len(cu),
               unit=cu, label=[classes[i] for i in cl], count=gamma.count[cu, cl],
               frequency=gamma.frequency[cu, cl])

    errors = sorted(set(scan_result.errors))
    tables = {t: pa.table(cols) for t, cols in rows.items() if cols}  # no label columns: no label rows
    for t, table in tables.items():  # NaN means "undefined": store it as NULL
        tables[t] = pa.table({n: _nan_to_null(col) for n, col in zip(table.column_names, table.columns)})
    tables["ingest_errors"] = pa.table({
        "model": [model_name] * (len(listing_problems) + len(errors)),
        "dataset": [ds] * (len(listing_problems) + len(errors)),
        "image_id": [None] * len(listing_problems) + [i for i, _ in errors],
        "path": [p for p, _ in listing_problems] + [images.paths[i] for i, _ in errors],
        "stage": ["listing"] * len(listing_problems) + ["decode"] * len(errors),
        "error": [m for _, m in listing_problems] + [e for _, e in errors],
    }, schema=pa.schema([("model", pa.string()), ("dataset", pa.string()), ("image_id", pa.int64()),
                         ("path", pa.string()), ("stage", pa.string()), ("error", pa.string())]))
    tables["models"] = pa.table({
        "model": [model_name], "dataset": [ds], "architecture": [model.architecture], "source": [model.source],
        "weights": [model.weights], "image_size": [options.image_size], "top_n": [options.top_n],
        "min_rel": [options.min_rel], "gamma_th": [options.gamma_th], "color_threshold": [options.color_threshold],
        "hierarchy_layer": [scan_result.hierarchy_layer],
        "n_images": [scan_result.n_seen], "n_errors": [len(errors)], "n_neurons": [n_neurons],
        "device": [str(options.resolved_device())], "seconds": [seconds],
        "ingested_at": [datetime.now(timezone.utc).replace(tzinfo=None)], "neurocat_version": [__version__]})
    tables.update(dataset_tables(images, scan_result.mean_colour.tolist()))
    tables.update(run_analyses(model_name, ds, classes, tables, scan_result, options))
    return tables


def run_analyses(model_name, dataset, classes, tables, scan_result: Scan, options: IngestOptions) -> dict:
    """The cheap analyses of issue-3 kind, from the run's own rows and the pass's class means."""
    cofs = analyses.cof_matrices(tables["class_frequencies"], tables["units"], classes)
    out = analyses.similarity(model_name, dataset, cofs, options.similarity_k)
    faceted = analyses.faceted(model_name, dataset, cofs)["neuron_indexes"]
    out["neuron_indexes"] = pa.concat_tables([tables["neuron_indexes"], faceted.cast(tables["neuron_indexes"].schema)])
    if scan_result.class_mean is not None:
        cm = scan_result.class_mean
        out.update(analyses.hierarchy(model_name, dataset, scan_result.hierarchy_layer, classes,
                                      cm.result().cpu().numpy(), cm.counts.cpu().numpy()))
    return out


def _nan_to_null(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_floating(col.type):
        import pyarrow.compute as pc

        return pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
    return col


def dataset_tables(images: LabelledImages, mean_rgb: list[float]) -> dict[str, pa.Table]:
    n = len(images)
    extra_ids, extra_sets, extra_values = [], [], []
    for label_set, values in images.extra_labels.items():
        extra_ids += range(n)
        extra_sets += [label_set] * n
        extra_values += values
    hierarchy = hierarchy_rows(images.classes)
    return {
        "label_hierarchy": pa.table({"dataset": [images.name] * len(hierarchy),
                                     **dict(zip(("label", "ancestor", "depth", "name"), map(list, zip(*hierarchy))))}),
        "datasets": pa.table({"dataset": [images.name], "root": [str(images.root.resolve())], "n_images": [n],
                              "n_classes": [len(images.classes)], "fingerprint": [images.fingerprint()],
                              "mean_r": [mean_rgb[0]], "mean_g": [mean_rgb[1]], "mean_b": [mean_rgb[2]]}),
        "images": pa.table({"dataset": [images.name] * n, "image_id": list(range(n)), "path": images.paths,
                            "label": images.labels}),
        "image_labels": pa.table({"dataset": [images.name] * len(extra_ids), "image_id": extra_ids,
                                  "label_set": extra_sets, "label": extra_values},
                                 schema=pa.schema([("dataset", pa.string()), ("image_id", pa.int64()),
                                                   ("label_set", pa.string()), ("label", pa.string())])),
    }


def write_parquet(tables: dict[str, pa.Table], run_dir: Path) -> dict[str, Path]:
    """Write each table to a temporary name and rename, so no half-written file is ever read."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, table in tables.items():
        final = run_dir / f"{name}.parquet"
        tmp = run_dir / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        paths[name] = final
    return paths


def run_dir_for(catalog_path: Path, model_name: str, dataset: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{model_name}__{dataset}")
    return catalog_path.parent / "neurocat-runs" / safe


def _check_catalogue(catalog_path: Path, images: LabelledImages, model_name: str) -> None:
    with catalog.open(catalog_path) as cat:  # fail early on a locked file or a clashing data set
        old = cat.dataset_fingerprint(images.name)
        if old is not None and old != images.fingerprint() and set(cat.models_on(images.name)) - {model_name}:
            raise UsageError(f"the catalogue already has a different data set named {images.name!r} "
                             f"(used by {', '.join(cat.models_on(images.name))}); choose another --dataset-name")


def _layers(model: LoadedModel, layers: list[str] | None, options: IngestOptions) -> list[str]:
    layer_names = resolve_layers(model.module, layers)
    if options.hierarchy_layer and resolve_layers(model.module, [options.hierarchy_layer]) != [options.hierarchy_layer]:
        raise UsageError(f"--hierarchy-layer must name one layer exactly, not a pattern: {options.hierarchy_layer!r}")
    return layer_names


def ingest(model: LoadedModel, images: LabelledImages, catalog_path: str | Path, model_name: str | None = None,
           layers: list[str] | None = None, options: IngestOptions | None = None) -> IngestSummary:
    """Index ``model`` on ``images`` into the catalogue at ``catalog_path``; returns a summary."""
    options = options or IngestOptions()
    catalog_path = Path(catalog_path)
    model_name = model_name or model.architecture
    start = time.perf_counter()
    layer_names = _layers(model, layers, options)
    _check_catalogue(catalog_path, images, model_name)
    run_dir = run_dir_for(catalog_path, model_name, images.name)
    checkpoint = Checkpoint(run_dir / "scan-checkpoint.pt", run_fingerprint(model, layer_names, images, options))
    scan_start = time.perf_counter()
    if options.engine == "ray":  # Ray retries failed work itself; no checkpoint
        from . import ray_engine

        result = ray_engine.scan(model, layer_names, images, options, options.address, options.workers or 1,
                                 options.gpus_per_worker)
    elif options.engine == "local":
        result = scan(model, layer_names, images, options, checkpoint=checkpoint)
    else:
        raise UsageError(f"--engine must be local or ray, not {options.engine!r}")
    summary = finish(model, images, catalog_path, model_name, layer_names, result, options, start,
                     time.perf_counter() - scan_start)
    checkpoint.remove()
    return summary


def finish(model: LoadedModel, images: LabelledImages, catalog_path: Path, model_name: str, layer_names: list[str],
           result: Scan, options: IngestOptions, start: float, scan_seconds: float) -> IngestSummary:
    """After the scan: receptive fields, crops and NF, indexes and analyses, Parquet, one load."""
    fields = receptive_fields(model.module, layer_names, options.image_size)
    for name, info in result.layers.items():
        info.rf = fields[name]
    features = neuron_features(model, images, result, options)
    seconds = time.perf_counter() - start
    tables = build_tables(model_name, model, images, result, features, options, seconds, images.problems)
    paths = write_parquet(tables, run_dir_for(catalog_path, model_name, images.name))
    with catalog.open(catalog_path) as cat:
        cat.load_run(paths, model_name, images.name)
    return IngestSummary(model_name, images.name, catalog_path, result.n_seen,
                         tables["ingest_errors"].num_rows, int(tables["units"].num_rows), len(layer_names),
                         time.perf_counter() - start, scan_seconds)
