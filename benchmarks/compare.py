"""Matching by activations at scale: EfficientNet-Lite0 (ImageNet weights) against a seeded random-weight
copy of itself, every Conv2d (49 layers, 21,008 units each), K = 2,000 probe images; time and peak
memory of unit matching and of the full CKA grid (docs/science.md §23).

    python benchmarks/compare.py                      # CPU (NumPy BLAS)
    python benchmarks/compare.py --device cuda        # the products on the GPU (ingest.matching)
    python benchmarks/compare.py --layers 20          # the first 20 layers only (a subset on a slow machine)

The activations come from the scan itself (``ImageActivations`` via ``record``, as `neurocat ingest
--keep-activations` keeps them, float16) on the demo stimulus set (2,080 images, at ``--image-size``: the matching's cost does not depend on
it, only the scan's) and are cached
in ``--cache`` so a rerun times the matching alone. Peak memory: the largest NumPy allocation total
during the step (tracemalloc), and on CUDA torch's peak device memory; ru_maxrss for the whole process.
"""
from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from catalog.compare import layer_cka, unit_matches
from ingest.data import open_images
from ingest.layers import resolve_layers
from ingest.matching import device_matmul
from ingest.models import EFFICIENTNET_LITE0, LoadedModel, load_model, seeded
from ingest.network import Network
from ingest.options import IngestOptions
from ingest.record import record, scan_state
from ingest.stimuli import generate


def random_copy(seed: int) -> LoadedModel:
    from efficientnet_lite_pytorch import EfficientNet

    module = seeded(lambda: EfficientNet.from_name(EFFICIENTNET_LITE0), seed)
    return LoadedModel(module.eval(), EFFICIENTNET_LITE0, "package", None, (0.5,) * 3, (0.5,) * 3, seed=seed)


def kept_activations(model: LoadedModel, images, k: int, image_size: int, device: str) -> dict[str, np.ndarray]:
    """What `ingest --keep-activations k` stores: layer -> (k × units) spatial maxima, float16."""
    layers = resolve_layers(model.module, None)
    options = IngestOptions(image_size=image_size, batch_size=50, workers=2, progress=True, device=device)
    network = Network(model, device)
    state = scan_state(layers, 1, images, layers[-1], network.device, keep_activations=k)
    record(network, images, state, options, ids=list(range(k)))
    return {layer: kept.result()[1].cpu().numpy() for layer, kept in state.image_activations().items()}


def cached(path: Path, make) -> dict[str, np.ndarray]:
    if path.exists():
        with np.load(path) as f:
            return {name: f[name] for name in f.files}
    acts = make()
    np.savez(path, **acts)
    return acts


def measured(step):
    """(result, seconds, peak NumPy MiB, peak CUDA MiB or None)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    tracemalloc.start()
    start = time.perf_counter()
    out = step()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return out, seconds, peak, cuda


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=2000, help="probe images")
    p.add_argument("--layers", type=int, default=None, help="only the first N layers of each model")
    p.add_argument("--device", default="cpu", help="where the products run (cpu: NumPy)")
    p.add_argument("--scan-device", default=None, help="device of the scan that makes the activations")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--block", type=int, default=2048)
    p.add_argument("--batch", type=int, default=512, help="CKA minibatch")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "neurocat-compare-benchmark")
    args = p.parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    data = args.cache / "stimuli"
    if not (data / "manifest.csv").exists():
        generate(data, variants=13)  # 5 shapes × 8 hues × 4 textures × 13 = 2,080 images
    images = open_images(data / "manifest.csv", "stimuli")
    scan_device = args.scan_device or args.device
    tag = f"k{args.k}-s{args.image_size}"
    acts_a = cached(args.cache / f"trained-{tag}.npz",
                    lambda: kept_activations(load_model(EFFICIENTNET_LITE0), images, args.k, args.image_size, scan_device))
    acts_b = cached(args.cache / f"random-{tag}.npz",
                    lambda: kept_activations(random_copy(1), images, args.k, args.image_size, scan_device))
    if args.layers:
        acts_a = dict(list(acts_a.items())[:args.layers])
        acts_b = dict(list(acts_b.items())[:args.layers])
    units = sum(x.shape[1] for x in acts_a.values())
    matmul = device_matmul(args.device)

    matches, t_match, mem_match, cuda_match = measured(
        lambda: unit_matches(acts_a, acts_b, "trained", "random", block=args.block, matmul=matmul))
    grid, t_cka, mem_cka, cuda_cka = measured(
        lambda: layer_cka(acts_a, acts_b, "trained", "random", batch=args.batch, within=True, matmul=matmul))

    one = np.array(matches.column("kind").to_pylist()) == "one_to_one"
    r = np.array(matches.column("correlation").to_pylist())
    cka = np.array(grid.column("cka").to_pylist(), dtype=float)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"\n{len(acts_a)} layers, {units} units per model, K = {args.k}, device {args.device} ({device}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"unit matching: {t_match:.1f} s, peak NumPy {mem_match:.0f} MiB"
          + (f", peak CUDA {cuda_match:.0f} MiB" if cuda_match is not None else "")
          + f"; {matches.num_rows} rows, one-to-one r > 0.8: {int((r[one] > 0.8).sum()) // 2}")
    print(f"CKA grid (A×B, A×A, B×B; {grid.column('estimator')[0]}): {t_cka:.1f} s, peak NumPy {mem_cka:.0f} MiB"
          + (f", peak CUDA {cuda_cka:.0f} MiB" if cuda_cka is not None else "")
          + f"; {grid.num_rows} pairs, CKA trained×random diagonal mean "
          f"{np.nanmean([c for c, row in zip(cka, grid.to_pylist()) if row['model_a'] != row['model_b'] and row['layer_a'] == row['layer_b']]):.3f}")
    print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
