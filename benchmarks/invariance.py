"""Seconds per 1,000 neurons of the orientation + symmetry indexes (docs/science.md §21) on CPU.

    python benchmarks/invariance.py [--images 300] [--image-size 128] [--top-n 20] [--layers all|demo]

Ingests EfficientNet-Lite0 (real ImageNet weights) on the first --images demo stimuli (generated if
needed), then times `analyze_invariance` (23 rotations + 4 mirrors per top image) layer by layer and
reports, per layer, neurons, distinct (image, position) keys, box side, seconds and seconds per 1,000
neurons; and the same layer on whole images (box evaluation switched off) for the speed-up.
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch

import catalog
from ingest import invariance as inv
from ingest.cli import DEMO_LAYERS
from ingest.data import open_images
from ingest.models import EFFICIENTNET_LITE0, load_model
from ingest.network import Network
from ingest.patches import LayerGeometry, layer_geometry
from ingest.pipeline import IngestOptions, ingest
from ingest.stimuli import generate


def subset(source: Path, out: Path, n: int) -> Path:
    rows = list(csv.reader(source.open()))
    header, body = rows[0], rows[1:]
    step = max(1, len(body) // n)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in body[::step][:n]:
            w.writerow([str((source.parent / r[0]).resolve())] + r[1:])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--top-n", type=int, default=20)
    ap.add_argument("--layers", default="demo", help="demo (the demo's 5 layers), all (every Conv2d), or a list")
    ap.add_argument("--whole", action="store_true", help="also time whole-image evaluation per layer")
    ap.add_argument("--data", type=Path, default=None, help="demo-data folder (generated in a temp dir if absent)")
    ap.add_argument("--catalog", type=Path, default=None, help="reuse this catalogue of an earlier run (no ingest)")
    ap.add_argument("--max-neurons", type=int, default=None, help="time only the first N neurons of each layer "
                                                                  "(seconds per 1,000 neurons extrapolated)")
    args = ap.parse_args()
    tmp = args.catalog.parent if args.catalog else Path(tempfile.mkdtemp(prefix="neurocat-invariance-"))
    data = args.data or tmp / "demo-data"
    if not (data / "manifest.csv").exists():
        generate(data)
    manifest = subset(data / "manifest.csv", tmp / "subset.csv", args.images)
    model = load_model(EFFICIENTNET_LITE0)
    layers = None if args.layers == "all" else DEMO_LAYERS if args.layers == "demo" else args.layers.split(",")
    images = open_images(str(manifest), "demo")
    start = time.perf_counter()
    if not args.catalog:
        ingest(model, images, tmp / "c.duckdb", EFFICIENTNET_LITE0, layers,
               IngestOptions(image_size=args.image_size, top_n=args.top_n, workers=0, device="cpu", progress=False,
                             self_activation=False))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(images)} images at "
          f"{args.image_size} px, ingest {time.perf_counter() - start:.1f} s")
    net = Network(model, "cpu")
    transforms = inv.transforms_for(["orientation", "symmetry"], 15)
    total_n, total_s = 0, 0.0
    print(f"{'layer':28s} {'neurons':>7s} {'keys':>6s} {'box':>5s} {'rf':>4s} {'s':>8s} {'s/1000 n':>9s} {'whole s':>8s}")
    with catalog.open(tmp / "c.duckdb") as cat:
        for row in cat.layers(EFFICIENTNET_LITE0, "demo").to_pylist():
            name = row["layer"]
            tops = cat.top_images(EFFICIENTNET_LITE0, "demo", name, top=args.top_n, live=True).to_pylist()
            n = row["channels"]
            if args.max_neurons:
                n = min(n, args.max_neurons)
                tops = [t for t in tops if t["unit"] < n]
            if not tops:
                continue
            first = tops[0]
            t0 = time.perf_counter()
            g = layer_geometry(net, name, row["rf_size"], row["rf_stride"],
                               first["crop_top"] - first["y"] * row["rf_stride"],
                               first["crop_left"] - first["x"] * row["rf_stride"], args.image_size)
            plan = inv.plan_layer(g, row["channels"], [t["unit"] for t in tops], [t["image_id"] for t in tops],
                                  [t["y"] for t in tops], [t["x"] for t in tops], [t["activation"] for t in tops])
            inv.run_layer(net, images, plan, transforms, args.image_size)
            seconds = time.perf_counter() - t0
            box = g.box(g.out_height // 2, g.out_width // 2)
            whole = ""
            if args.whole and g.patch:
                t1 = time.perf_counter()
                inv.run_layer(net, images, inv.plan_layer(LayerGeometry(**{**g.__dict__, "patch": False}), row["channels"],
                              [t["unit"] for t in tops], [t["image_id"] for t in tops], [t["y"] for t in tops],
                              [t["x"] for t in tops], [t["activation"] for t in tops]), transforms, args.image_size)
                whole = f"{time.perf_counter() - t1:8.1f}"
            total_n, total_s = total_n + n, total_s + seconds
            print(f"{name:28s} {n:7d} {len(plan.key_image):6d} {box[1] - box[0] if g.patch else 'whole':>5} "
                  f"{row['rf_size']:4d} {seconds:8.1f} {1000 * seconds / n:9.1f} {whole:>8s}", flush=True)
    print(f"all {total_n} neurons: {total_s:.1f} s, {1000 * total_s / max(total_n, 1):.1f} s per 1,000 neurons")


if __name__ == "__main__":
    main()
