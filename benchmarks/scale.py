"""Single process vs three shards + merge vs the Ray engine on the same data: equal catalogues, wall times.

    python benchmarks/scale.py --images 480

resnet18 (seeded random weights saved to a file), all Conv2d layers, 64 px. Shards run one after the
other here, so their sum is the cost a Slurm array would spread over three jobs.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.stimuli import generate


def tables(path: Path) -> dict:
    with catalog.open(path, read_only=True) as cat:
        out = {}
        for t in cat.tables():
            df = cat.df(f"SELECT * FROM {t}").drop(columns=["seconds", "ingested_at", "root"], errors="ignore")
            out[t] = df.sort_values(list(df.columns)[: min(5, len(df.columns))]).reset_index(drop=True)
        return out


def invoke(*args) -> float:
    start = time.perf_counter()
    r = CliRunner().invoke(app, [str(a) for a in args])
    if r.exit_code != 0:
        raise SystemExit(r.output)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=480)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="neurocat-scale-"))
    data = generate(tmp / "data", variants=max(1, args.images // 160), size=64)
    torch.manual_seed(0)
    weights = tmp / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    common = ["--model", "resnet18", "--weights", weights, "--data", data, "--image-size", 64, "-q"]
    single = invoke("ingest", *common, "--catalog", tmp / "single.duckdb", "--workers", 1)
    shard_times = [invoke("ingest", *common, "--shard", f"{i}/3", "--out", tmp / f"part-{i}", "--workers", 1)
                   for i in (1, 2, 3)]
    merge = invoke("merge", *(tmp / f"part-{i}" for i in (1, 2, 3)), "--catalog", tmp / "merged.duckdb", "-q")
    ray = invoke("ingest", *common, "--catalog", tmp / "ray.duckdb", "--engine", "ray", "--workers", 1)
    reference = tables(tmp / "single.duckdb")
    for name in ("merged", "ray"):
        other = tables(tmp / f"{name}.duckdb")
        equal = other.keys() == reference.keys() and all(other[t].equals(reference[t]) for t in reference)
        print(f"{name:7s} catalogue equals the single run: {equal}")
    print(f"single process            {single:7.1f} s")
    print(f"3 shards (sequential sum) {sum(shard_times):7.1f} s   slowest shard {max(shard_times):.1f} s")
    print(f"merge (crops, indexes)    {merge:7.1f} s")
    print(f"shards + merge / single   {(sum(shard_times) + merge) / single:7.2f}  "
          f"(as a 3-job array: {(max(shard_times) + merge) / single:.2f})")
    print(f"ray engine / single       {ray / single:7.2f}  ({ray:.1f} s, local Ray on this machine, start-up included)")


if __name__ == "__main__":
    main()
