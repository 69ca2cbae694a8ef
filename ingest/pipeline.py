"""`neurocat ingest`, stage by stage: record (the scan, ``record.py``), passes over the top images
(``top_images.py``), measures (pure functions: ``selectivity.py``, ``analysis_tables.py``), rows (pure:
``rows.py``), then Parquet files and one transaction into the catalogue (``load``)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from torch import nn

import catalog
from catalog.lock import CatalogueLocked, writer_lock

from .data import LabelledImages
from .errors import UsageError
from .layers import resolve_layers
from .models import LoadedModel
from .network import Network
from .options import IngestOptions, hierarchy_layer
from .receptive_field import receptive_fields
from .record import Checkpoint, ScanState, fingerprint_of, record, run_key, scan_state
from .rows import LayerResult, image_activation_rows, run_tables
from .top_images import neuron_features, self_activations

__all__ = ["IngestOptions", "IngestSummary", "ingest", "index_scan", "choose_layers", "check_catalogue",
           "catalogue_writer", "run_dir_for", "checkpoint_path", "print_activations_estimate"]


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
    phases: dict[str, float] = field(default_factory=dict)  # seconds per stage after the scan

    @property
    def images_per_second(self) -> float:
        return self.images / self.scan_seconds if self.scan_seconds else float("nan")


def choose_layers(model: LoadedModel, layers: list[str] | None, options: IngestOptions) -> list[str]:
    """The layers to index (default every Conv2d); an unknown name or a pattern as hierarchy layer is a usage error."""
    layer_names = resolve_layers(model.module, layers)
    if options.hierarchy_layer and resolve_layers(model.module, [options.hierarchy_layer]) != [options.hierarchy_layer]:
        raise UsageError(f"--hierarchy-layer must name one layer exactly, not a pattern: {options.hierarchy_layer!r}")
    return layer_names


# Catalogue growth per kept (neuron, image) row: DuckDB stores max and mean as 4-byte REAL beside the row's
# keys; measured 429 MiB for 42,016,000 rows (benchmarks/RESULTS.md, matching by activations).
DUCKDB_BYTES_PER_KEPT_ROW = 429 * 2**20 / 42_016_000


def activations_estimate(model: LoadedModel, layer_names: list[str], n_images: int, options: IngestOptions,
                         shard_images: int | None = None) -> str:
    """The disk ``--keep-activations`` will take: K × neurons × 2 bytes (float16) × 2 (max and mean) of
    Parquet, and the catalogue's growth; ``shard_images``: how many of the K a shard keeps in its state."""
    from .layer_table import output_shapes

    modules = dict(model.module.named_modules())
    channels = {n: modules[n].out_channels for n in layer_names if isinstance(modules.get(n), nn.Conv2d)}
    others = [n for n in layer_names if n not in channels]
    if others:  # one small forward pass to learn their widths
        channels.update({n: shape[1] for n, shape in output_shapes(model.module, others, options.image_size).items()})
    k = n_images if options.keep_activations is None else min(options.keep_activations, n_images)
    neurons = sum(channels.values())
    shard = "" if shard_images is None else (f"; this shard keeps {shard_images} of the images "
                                             f"(≈ {shard_images * neurons * 4 / 2**20:.1f} MiB in its state)")
    return (f"--keep-activations: {k} images × {neurons} neurons × 2 bytes × 2 (max, mean) ≈ "
            f"{k * neurons * 4 / 2**20:.1f} MiB of Parquet (image_activations) and ≈ "
            f"{k * neurons * DUCKDB_BYTES_PER_KEPT_ROW / 2**20:.1f} MiB more catalogue (DuckDB, 4-byte REAL){shard}")


def print_activations_estimate(model: LoadedModel, layer_names: list[str], n_images: int, options: IngestOptions,
                               shard_images: int | None = None) -> None:
    """The estimate on stderr before the scan, unless --keep-activations 0 or -q."""
    if options.keep_activations != 0 and options.progress:
        print(activations_estimate(model, layer_names, n_images, options, shard_images), file=sys.stderr)


def check_catalogue(catalog_path: Path, images: LabelledImages, model_name: str) -> None:
    """Fail early on a catalogue that cannot be written or already holds another data set of this name."""
    with catalog.open(catalog_path) as cat:
        old = cat.dataset_fingerprint(images.name)
        if old is not None and old != images.fingerprint() and set(cat.models_on(images.name)) - {model_name}:
            raise UsageError(f"the catalogue already has a different data set named {images.name!r} "
                             f"(used by {', '.join(cat.models_on(images.name))}); choose another --dataset-name")


@contextlib.contextmanager
def catalogue_writer(catalog_path: Path, what: str):
    """Hold the catalogue's writer lock (``catalog.lock``) for the block; re-entrant. Another
    writer holding it is a usage error naming it (pid, command, since when)."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(writer_lock(catalog_path, what))
    except CatalogueLocked as exc:
        raise UsageError(str(exc)) from None
    with stack:
        yield


def run_dir_for(catalog_path: Path, model_name: str, dataset: str) -> Path:
    """The folder of one (catalogue, model, data set): its checkpoint and Parquet files. The hash of
    the exact names keeps apart names that sanitise alike (``tinynet:make``, ``tinynet_make``) and
    catalogues that share a folder."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{model_name}__{dataset}")[:80]
    digest = hashlib.sha256(json.dumps([Path(catalog_path).name, model_name, dataset]).encode()).hexdigest()[:10]
    return Path(catalog_path).parent / "neurocat-runs" / f"{safe}-{digest}"


def checkpoint_path(catalog_path: Path, model_name: str, dataset: str) -> Path:
    """Where a killed ingest's scan state waits for the same command to resume it."""
    return run_dir_for(catalog_path, model_name, dataset) / "scan-checkpoint.pt"


def ingest(model: LoadedModel, images: LabelledImages, catalog_path: str | Path, model_name: str | None = None,
           layers: list[str] | None = None, options: IngestOptions | None = None) -> IngestSummary:
    """Index ``model`` on ``images`` into the catalogue at ``catalog_path``; returns a summary."""
    options = options or IngestOptions()
    catalog_path = Path(catalog_path)
    model_name = model_name or model.architecture
    start = time.perf_counter()
    layer_names = choose_layers(model, layers, options)
    # One writer per catalogue from before the scan to the load: a second run fails now, not after its scan.
    with catalogue_writer(catalog_path, f"ingest {model_name} on {images.name}"):
        network = Network(model, options.device, options.autocast, options.channels_last)
        check_catalogue(catalog_path, images, model_name)
        print_activations_estimate(model, layer_names, len(images), options)  # once the run can start
        key = run_key(model, layer_names, images, options)
        checkpoint = Checkpoint(checkpoint_path(catalog_path, model_name, images.name), fingerprint_of(key), key)
        scan_start = time.perf_counter()
        if options.engine == "ray":  # Ray retries failed work itself; no checkpoint
            from . import ray_engine

            state = ray_engine.record(model, layer_names, images, options)
        else:
            state = scan_state(layer_names, options.top_n, images, hierarchy_layer(layer_names, options),
                               network.device, chunk=options.batch_size, keep_activations=options.keep_activations)
            record(network, images, state, options, checkpoint=checkpoint)
        summary = index_scan(network, images, catalog_path, model_name, layer_names, state, options, start,
                         time.perf_counter() - scan_start)
        checkpoint.remove()
    return summary


def warn_float16_overflow(kept: dict[str, tuple]) -> dict[str, int]:
    """Count the kept values that are not finite (past float16's ±65504 they became ±inf) per layer and
    say so in one line on stderr: silent, they would leave those units out of every match. Returns the counts."""
    import numpy as np

    counts = {layer: int((~np.isfinite(mx)).sum() + (~np.isfinite(mean)).sum()) for layer, (_, mx, mean) in kept.items()}
    counts = {layer: n for layer, n in counts.items() if n}
    if counts:
        print(f"warning: {sum(counts.values())} kept activations are not finite (float16 holds ±65504; stored as "
              f"±inf/NaN, those units get no correlation match): "
              + ", ".join(f"layer {layer}: {n}" for layer, n in counts.items()), file=sys.stderr)
    return counts


def index_scan(network: Network, images: LabelledImages, catalog_path: Path, model_name: str, layer_names: list[str],
           state: ScanState, options: IngestOptions, start: float, scan_seconds: float) -> IngestSummary:
    """After the scan: receptive fields, the passes over the top images, rows, Parquet, one load."""
    phases, clock = {}, [time.perf_counter()]

    def lap(name):
        now = time.perf_counter()
        phases[name] = now - clock[0]
        clock[0] = now

    fields = receptive_fields(network.module, layer_names, options.image_size)
    lap("receptive_fields")
    features, late_errors = neuron_features(network, images, state, fields, options)
    lap("crops")
    if options.wants_self_activation():
        self_activations(network, state, features, fields, options)
    lap("self_activation")
    types = {n: type(m).__name__ for n, m in network.module.named_modules()}
    layers = []
    for index, name in enumerate(layer_names):
        tops = state[f"top:{name}"]
        top = tops.result()
        layers.append(LayerResult(name, index, types.get(name, "Conv2d"), tops.shape[1], tops.shape[2], fields[name],
                                  top.values.cpu().numpy(), top.image_ids.cpu().numpy(), top.positions.cpu().numpy(),
                                  features[name]))
    errors = sorted(set(state.errors) | set(late_errors))
    hierarchy = hierarchy_layer(layer_names, options)
    tables = run_tables(model_name, network.model, images, layers, state["class_means"].result(), hierarchy,
                        state.n_seen, errors, state.mean_colour(options.image_size).tolist(), options,
                        str(network.device), time.perf_counter() - start)
    kept = {layer: tuple(t.numpy() for t in result) for layer, reducer in state.image_activations().items()
            if (result := reducer.result()) is not None}
    warn_float16_overflow(kept)
    tables["image_activations"] = image_activation_rows(model_name, images.name, kept)
    lap("rows")
    load(tables, catalog_path, model_name, images.name)
    lap("load")
    return IngestSummary(model_name, images.name, catalog_path, state.n_seen, tables["ingest_errors"].num_rows,
                         tables["units"].num_rows, len(layer_names), time.perf_counter() - start, scan_seconds, phases)


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


def load(tables: dict[str, pa.Table], catalog_path: Path, model_name: str, dataset: str) -> None:
    """The run's Parquet files, then one transaction into the catalogue: all rows land or none.

    The files go to a folder of this run alone (``run-<time>-<pid>-<random>``, created exclusively),
    so the load reads exactly the rows this run made; older runs' folders go once it has landed.
    """
    with catalogue_writer(catalog_path, f"load {model_name} on {dataset}"):
        run_dir = run_dir_for(catalog_path, model_name, dataset)
        run_dir.mkdir(parents=True, exist_ok=True)
        out = run_dir / f"run-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
        out.mkdir()
        paths = write_parquet(tables, out)
        with catalog.open(catalog_path) as cat:
            cat.load_run(paths, model_name, dataset)
        for old in run_dir.glob("run-*"):
            if old != out and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
