"""Peak RSS of a whole `neurocat ingest` at 1×, 4× and 16× the image count (target: growth < 10 %).

    python benchmarks/memory.py --images 160

Each run is a fresh process (ru_maxrss of the child). The larger sets repeat the base images
through symbolic links, so only the count changes.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingest.stimuli import generate


# Runs the CLI in-process (no loader workers), then reports its own peak RSS.
CHILD = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_module("ingest.cli", run_name="__main__")
except SystemExit:
    pass
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=160)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=64)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="neurocat-mem-"))
    base = generate(tmp / "base", variants=max(1, args.images // 160), size=args.image_size)
    rows = list(csv.DictReader(open(base)))
    results = []
    for factor in (1, 4, 16):
        folder = tmp / f"x{factor}"
        folder.mkdir()
        with open(folder / "manifest.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            for k in range(factor):
                for r in rows:
                    link = folder / f"{k}_{r['path'].replace('/', '_')}"
                    os.symlink(tmp / "base" / r["path"], link)
                    w.writerow([link.name, r["label"]])
        start = time.perf_counter()
        argv = ["neurocat", "ingest", "--model", args.model, "--data", str(folder / "manifest.csv"), "--catalog",
                str(folder / "c.duckdb"), "--image-size", str(args.image_size), "--workers", "0", "-q"]
        out = subprocess.run([sys.executable, "-c", CHILD, *argv], check=True, capture_output=True, text=True).stdout
        peak = int(out.split("PEAK")[-1])  # kB, this process alone
        results.append((factor, len(rows) * factor, peak / 1024, time.perf_counter() - start))
        print(f"{factor:3d}×  {len(rows) * factor:6d} images  peak RSS {peak / 1024:8.0f} MB  {results[-1][3]:6.1f} s")
    growth = results[-1][2] / results[0][2] - 1
    print(f"peak RSS growth from 1× to 16×: {100 * growth:.1f} % (target < 10 %)")


if __name__ == "__main__":
    main()
