"""Cost of the Neuron Feature sums per crop (the crop phase after the scan), by chunk size.

    python benchmarks/nf_accumulate.py --images 192 --channels 256

One synthetic layer (a 211-px field, stride 16, as ResNet-18's layer3, NF at 96 px), every neuron
with 100 crops; prints µs per crop for each chunk size, best of 3 alternating repeats.
"""
from __future__ import annotations

import argparse
import time

import torch

import ingest.neuron_feature as neuron_feature
from ingest.neuron_feature import Canvases, NeuronFeatureAccumulator, plan_crops
from ingest.receptive_field import ReceptiveField


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=192)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunks-mb", default="1,4,16,64,256")
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    n, c, width = args.images, args.channels, 14
    k = min(100, n)
    images = torch.rand(n, 3, 224, 224, generator=g)
    values = torch.rand(c, k, generator=g).sort(1, descending=True).values
    ids = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(c)])
    positions = torch.randint(0, width * width, (c, k), generator=g)
    plan = plan_crops("layer", ReceptiveField(211, 16, -90, -90), width, values, ids, positions, 0.0, k, 96)
    fill = torch.full((3,), 0.5)
    times: dict[int, list[float]] = {}
    for _ in range(3):
        for mb in (int(x) for x in args.chunks_mb.split(",")):
            neuron_feature.CHUNK_BYTES["cpu"] = mb << 20
            acc = NeuronFeatureAccumulator(plan, "cpu")
            start = time.perf_counter()
            for s in range(0, n, args.batch_size):
                acc.add(Canvases([plan], images[s:s + args.batch_size], fill), torch.arange(s, min(n, s + args.batch_size)))
            times.setdefault(mb, []).append(time.perf_counter() - start)
    print(f"{len(plan.units)} crops at {plan.nf_size} px, {torch.get_num_threads()} threads")
    for mb, t in times.items():
        print(f"chunk {mb:4d} MB: {1e6 * min(t) / len(plan.units):8.1f} us per crop")


if __name__ == "__main__":
    main()
