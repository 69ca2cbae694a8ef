"""Cost of the indexing pass over a plain forward pass: same model, loader, batch and device.

    python benchmarks/ingest_overhead.py --model resnet18 --images 512 --batch-size 64

Prints the throughput of each and their ratio (target: scan / forward <= 1.15), plus the
time of the crop and index phases that follow the scan. Runs alternate so drift on a shared
machine hits both sides alike.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch

from ingest.data import open_images
from ingest.models import load_model
from ingest.network import Network, image_batches
from ingest.pipeline import IngestOptions, ingest
from ingest.layers import resolve_layers
from ingest.record import record, scan_state
from ingest.stimuli import generate


def plain_forward(model, images, options) -> float:
    network = Network(model, options.device, options.autocast, options.channels_last)
    start = time.perf_counter()
    with torch.inference_mode(), network.precision():  # the same precision as the scan
        for batch in image_batches(images, list(range(len(images))), network.device, options.image_size,
                                   options.batch_size, options.resolved_workers()):
            network.module(network.inputs(batch.images01))
    if network.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timed_scan(model, layers, images, options) -> float:
    network = Network(model, options.device, options.autocast, options.channels_last)
    start = time.perf_counter()
    record(network, images, scan_state(layers, options.top_n, images, layers[-1], network.device), options)
    if options.resolved_device().type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--device", default=None)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--autocast", default=None, help="bfloat16 or float16 for the scan (GPU)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--scan-only", action="store_true", help="skip the whole ingest (forward vs scan only)")
    args = p.parse_args()

    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="neurocat-bench-"))
    variants = max(1, round(args.images / 160))
    manifest = generate(tmp / "data", variants=variants, size=args.image_size)
    images = open_images(manifest)
    model = load_model(args.model)
    options = IngestOptions(batch_size=args.batch_size, image_size=args.image_size, device=args.device,
                            autocast=args.autocast, channels_last=args.channels_last, progress=False)
    layers = resolve_layers(model.module, None)
    plain_forward(model, images, options)  # warm-up: threads, allocator, page cache
    forward_s, scan_s = [], []
    for _ in range(args.repeats):
        forward_s.append(plain_forward(model, images, options))
        scan_s.append(timed_scan(model, layers, images, options))
    summary = None
    if not args.scan_only:
        start = time.perf_counter()
        summary = ingest(model, images, tmp / "bench.duckdb", args.model, None, options)
        total = time.perf_counter() - start

    n = len(images)
    f, s = min(forward_s), min(scan_s)
    device = options.resolved_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"machine: {name}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"{args.model}, {len(layers)} layers, {n} images at {args.image_size} px, "
          f"batch {args.batch_size}, {device}, {options.resolved_workers()} loader workers")
    print(f"plain forward : {n / f:8.1f} images/s  (best of {args.repeats}: {f:.2f} s)")
    print(f"indexing scan : {n / s:8.1f} images/s  (best of {args.repeats}: {s:.2f} s)")
    print(f"ratio scan / forward time: {s / f:.3f}   (target <= 1.15)")
    if summary is None:
        return
    print(f"whole ingest (scan + crops + indexes + catalogue): {total:.2f} s = {total / f:.2f} x the forward pass")
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in summary.phases.items())
    print(f"after the scan: {phases}; {1000 * sum(summary.phases.values()) / summary.neurons:.2f} ms per neuron")


if __name__ == "__main__":
    main()
