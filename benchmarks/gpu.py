"""Where the time of an ingest goes, on a GPU (or, with smaller defaults, the CPU), in one run.

    python benchmarks/gpu.py                                   # CUDA: 10,000 photos, batch 256
    python benchmarks/gpu.py --device cpu --images 64           # the same rows on the CPU

Generates photo-sized JPEGs (500×375, quality 90) and prints, per model and per ``--decode``:
loader alone (decoded batches on the device), the device-only forward (one batch already on the
device, run again and again), the plain forward (loader + forward), the indexing scan, and the
whole ingest by phase. Then the tally alone with batches already on the device: forward only,
forward + our ``TopK`` per layer, forward + a netdissect-style ``RunningTopK`` written here.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ingest.data import open_images
from ingest.layers import resolve_layers
from ingest.models import load_model
from ingest.network import Network, image_batches, network_pass
from ingest.pipeline import IngestOptions, ingest
from ingest.record import record, scan_state
from ingest.runningstats import TopK, TopKGroup
from ingest.taps import LayerTap


def photos(root: Path, n: int, classes: int = 100) -> Path:
    """``n`` 500×375 JPEGs at quality 90: smooth colour fields, edges and noise, like photos to a decoder."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500].astype(np.float32)
    for i in range(n):
        d = root / f"c{i % classes:03d}"
        d.mkdir(parents=True, exist_ok=True)
        f = rng.uniform(5, 60, 3)
        img = np.stack([128 + 100 * np.sin(x / f[0] + i), 128 + 100 * np.cos(y / f[1]), 128 + 80 * np.sin((x + y) / f[2])], -1)
        img[rng.integers(0, 300):, rng.integers(0, 400):] *= 0.5
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i:05d}.jpg", quality=90)
    return root


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def loader_alone(images, options, device):
    for batch in image_batches(images, list(range(len(images))), device, options.image_size, options.batch_size,
                               options.resolved_workers(), options.decode):
        batch.images01  # noqa: B018 - the batch as the network would get it


def plain_forward(network, images, options):
    batches = image_batches(images, list(range(len(images))), network.device, options.image_size,
                            options.batch_size, options.resolved_workers(), options.decode)
    for _ in network_pass(network, batches, None, lambda *a: None, progress=False):
        pass


class NetdissectTopK:
    """netdissect's RunningTopK, reduced to what the scan needs: per channel the top-k values and
    image ids by spatial maximum, buffered, one ``topk`` per full buffer (no exact tie-break)."""

    def __init__(self, k: int, buffer: int = 256):
        self.k, self.buffer = k, buffer
        self.values = self.ids = None
        self.pending = []

    def add(self, values: torch.Tensor, ids: torch.Tensor) -> None:
        self.pending.append((values, ids))
        if sum(len(i) for _, i in self.pending) >= self.buffer:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        values = torch.cat([v for v, _ in self.pending])
        ids = torch.cat([i for _, i in self.pending]).view(-1, 1).expand_as(values)
        self.pending = []
        if self.values is not None:
            values, ids = torch.cat([self.values, values]), torch.cat([self.ids, ids])
        top = values.topk(min(self.k, len(values)), dim=0)
        self.values, self.ids = top.values, ids.gather(0, top.indices)


def tally(network, layers, batch, steps, k, kind):
    """Forward passes of one resident batch, with the layers' maxima folded by ``kind``."""
    # Each step its own image ids, and every layer of a step the same id tensor, as in the scan.
    step_ids = [torch.arange(s * len(batch), (s + 1) * len(batch), device=network.device) for s in range(steps)]
    ids = step_ids[0]
    tops = {}
    group = TopKGroup()  # every layer folds in one go, as in the scan

    def fold(name, out):
        values, positions = out.flatten(2).max(dim=2)
        if kind in ("ours", "per-layer"):
            if name not in tops:
                tops[name] = TopK(values.shape[1], k, network.device, group=group if kind == "ours" else None)
            tops[name].update(values.float(), ids, positions)
        elif kind == "netdissect":
            tops.setdefault(name, NetdissectTopK(k)).add(values.float(), ids)

    x = network.inputs(batch)
    # The forward alone runs up to the deepest layer too, as the scan does: a tap that folds nothing.
    with LayerTap(network.module, layers) as tap, torch.inference_mode(), network.precision():
        for step in range(steps):
            ids = step_ids[step]  # noqa: F841 - fold reads it
            tap.run(x, (lambda name, out: None) if kind == "forward" else fold)
            group.end_batch()
        for t in tops.values():
            t.values if kind in ("ours", "per-layer") else t.flush()  # noqa: B018 - the last fold counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="resnet18,vgg16")
    p.add_argument("--decode", default="cpu,gpu")
    p.add_argument("--images", type=int, default=None, help="default 10,000 on CUDA, 64 on the CPU")
    p.add_argument("--batch-size", type=int, default=None, help="default 256 on CUDA, 16 on the CPU")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--autocast", default=None, help="bfloat16 or float16 (default bfloat16 on CUDA)")
    p.add_argument("--channels-last", action="store_true", default=None)
    p.add_argument("--top-n", type=int, default=100)
    p.add_argument("--tally-steps", type=int, default=None, help="forward passes per tally row (default 40 / 3)")
    p.add_argument("--tally-only", action="store_true", help="only the tally rows (batches already on the device)")
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    n = args.images or (10_000 if cuda else 64)
    batch_size = args.batch_size or (256 if cuda else 16)
    autocast = args.autocast or ("bfloat16" if cuda else None)
    channels_last = cuda if args.channels_last is None else args.channels_last
    steps = args.tally_steps or (40 if cuda else 3)
    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="neurocat-gpu-bench-"))
    images = None if args.tally_only else open_images(photos(tmp / "photos", n))
    name = torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine()
    print(f"machine: {name}; torch {torch.__version__}, {torch.get_num_threads()} threads; {n} JPEGs 500x375 q90 "
          f"at {args.image_size} px, batch {batch_size}, autocast {autocast}, channels-last {channels_last}")
    for model_name in args.models.split(","):
        model = load_model(model_name)
        layers = resolve_layers(model.module, None)
        network = Network(model, device, autocast, channels_last)
        resident = torch.rand(batch_size, 3, args.image_size, args.image_size, device=device)
        resident_s = timed(lambda: tally(network, layers, resident, steps, args.top_n, "forward"), device)
        print(f"\n{model_name}: {len(layers)} layers; device-only forward {steps * batch_size / resident_s:,.0f} img/s")
        for decode in ([] if args.tally_only else args.decode.split(",")):
            options = IngestOptions(batch_size=batch_size, image_size=args.image_size, device=str(device),
                                    workers=args.workers, autocast=autocast, channels_last=channels_last,
                                    decode=decode, top_n=args.top_n, progress=False, checkpoint_every=0)
            loader_s = timed(lambda: loader_alone(images, options, device), device)
            forward_s = timed(lambda: plain_forward(network, images, options), device)
            scan_s = timed(lambda: record(network, images, scan_state(layers, args.top_n, images, layers[-1],
                                                                      device), options), device)
            start = time.perf_counter()
            summary = ingest(model, images, tmp / f"{model_name}-{decode}.duckdb", model_name, None, options)
            whole = time.perf_counter() - start
            phases = ", ".join(f"{k} {v:.1f}" for k, v in summary.phases.items())
            post = sum(summary.phases.values())
            print(f"  decode {decode:3}: loader {n / loader_s:8,.0f} img/s | plain forward {n / forward_s:8,.0f} | "
                  f"scan {n / scan_s:8,.0f} (scan/forward {scan_s / forward_s:.2f}, "
                  f"{resident_s / steps / batch_size * n / scan_s:.2f} of device-only)")
            print(f"             whole ingest {whole:.1f} s = {whole / summary.scan_seconds:.2f} x its scan; "
                  f"after the scan {post:.1f} s ({1000 * post / summary.neurons:.2f} ms per neuron of "
                  f"{summary.neurons}): {phases}")
        rows = {kind: timed(lambda: tally(network, layers, resident, steps, args.top_n, kind), device)
                for kind in ("forward", "ours", "per-layer", "netdissect")}
        print(f"  tally, batches on the device: forward {steps * batch_size / rows['forward']:,.0f} img/s, "
              f"+ TopK (all layers folded together) {rows['ours'] / rows['forward']:.3f} x, "
              f"+ TopK folded per layer {rows['per-layer'] / rows['forward']:.3f} x, + netdissect RunningTopK "
              f"{rows['netdissect'] / rows['forward']:.3f} x the forward time")


if __name__ == "__main__":
    main()
