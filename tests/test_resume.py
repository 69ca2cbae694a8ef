"""A run killed with SIGKILL mid-scan resumes with the same command and gives the same catalogue."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import catalog
from ingest.pipeline import checkpoint_path
from tests.test_ingest_planted import tables

ROOT = Path(__file__).resolve().parent.parent


def many_images(root, n=240, size=48):
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / f"c{i % 4}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"c{i % 4}" / f"{i:03d}.png")
    return root


def command(data, cat, weights):
    return [sys.executable, "-m", "ingest.cli", "ingest", "--model", "resnet18", "--weights", str(weights),
            "--layers", "layer1.*",
            "--data", str(data), "--catalog", str(cat), "--image-size", "48", "--batch-size", "2",
            "--workers", "0", "--checkpoint-every", "3", "--top-n", "20", "-q"]


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    import torch
    import torchvision

    data = many_images(tmp_path / "data")
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    whole = tmp_path / "whole" / "c.duckdb"
    whole.parent.mkdir()
    subprocess.run(command(data, whole, weights), check=True, env=env, cwd=ROOT, capture_output=True)

    killed = tmp_path / "killed" / "c.duckdb"
    killed.parent.mkdir()
    checkpoint = checkpoint_path(killed, "resnet18", "data")
    proc = subprocess.Popen(command(data, killed, weights), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the run ended before it could be killed"
    assert checkpoint.exists()
    result = subprocess.run(command(data, killed, weights), env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not checkpoint.exists()  # removed once the catalogue holds the run
    with catalog.open(whole, read_only=True) as a, catalog.open(killed, read_only=True) as b:
        ta, tb = tables(a), tables(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        drop = [c for c in ("root",) if c in ta[name]]
        assert ta[name].drop(columns=drop).equals(tb[name].drop(columns=drop)), name
