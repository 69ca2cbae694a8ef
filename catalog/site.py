"""The Datasette site over a published catalogue: what `neurocat serve` runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

from .catalog import Catalog
from .publish import publish, write_metadata

# Package data; Datasette wants folders on disk, which pip installs (unzipped) and the checkout both give.
HERE = Path(files("catalog") / "datasette")


def published_path(catalog_path: Path) -> Path:
    return catalog_path.with_suffix(".db")


def is_stale(catalog_path: Path, out: Path) -> bool:
    return not out.exists() or out.stat().st_mtime < catalog_path.stat().st_mtime


def prepare(catalog_path: Path, out: Path | None = None, force: bool = False) -> tuple[Path, Path, bool]:
    """Publish when the SQLite copy is missing or older than the catalogue; write the metadata."""
    out = out or published_path(catalog_path)
    Catalog(catalog_path, read_only=True).close()  # an older or newer schema: its clear error, not a broken site
    republished = force or is_stale(catalog_path, out)
    if republished:
        publish(catalog_path, out)
    return out, write_metadata(out.with_suffix(".metadata.json"), out.stem), republished


def datasette_command(db: Path, metadata: Path, host: str = "127.0.0.1", port: int = 8001) -> list[str]:
    """Datasette serving ``db`` read-only, with our pages, templates and the image plugin."""
    return [sys.executable, "-m", "datasette", "serve", "-i", str(db), "--metadata", str(metadata),
            "--plugins-dir", str(HERE), "--template-dir", str(HERE / "templates"),
            "--host", host, "--port", str(port),
            "--setting", "sql_time_limit_ms", "5000", "--setting", "suggest_facets", "off",
            "--setting", "default_page_size", "50"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(db: Path, metadata: Path, port: int | None = None, timeout: float = 60.0):
    """Datasette on 127.0.0.1 for the duration of a ``with`` block; yields its base URL, stops it by PID."""
    port = port or free_port()
    proc = subprocess.Popen(datasette_command(db, metadata, port=port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(base + "/-/versions.json", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"datasette did not start on {base}") from None
                time.sleep(0.3)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
