"""The Datasette site over a published catalogue: what `neurocat serve` runs."""
from __future__ import annotations

import ipaddress
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


def exposure_warning(host: str) -> str | None:
    """What to tell the user when ``host`` is not a loopback address; None when it is."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    return None if loopback else f"serving on {host}: anyone who can reach this machine can read the catalogue"


FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def serve(db: Path, metadata: Path, host: str = "127.0.0.1", port: int = 8001, grace: float = 10.0) -> int:
    """Run Datasette on ``db`` until it exits, or until this process gets SIGTERM, SIGINT or SIGHUP.

    Datasette runs as a child in its own process group, so a terminal's Ctrl-C reaches it only through
    here: each of those signals is passed on to the group and waited for, ``grace`` seconds at most,
    then the group is killed. On Linux the child also gets SIGTERM should this process die unasked
    (SIGKILL). Returns an exit status: 128 + the signal when one stopped it, else Datasette's.
    """
    received: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum, _frame):
        received.append(signum)
        for proc in child:
            _signal_group(proc, signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}  # first: a signal while starting counts too
    try:
        warning = exposure_warning(host)
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        proc = subprocess.Popen(datasette_command(db, metadata, host, port), start_new_session=True,
                                preexec_fn=_die_with_parent())
        child.append(proc)
        if received:  # arrived before there was a child to pass it to
            _signal_group(proc, received[0])
        deadline = None
        while proc.poll() is None:
            if received and deadline is None:
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=0.5)  # a bounded wait, so the deadline is checked after a signal
            except subprocess.TimeoutExpired:
                pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for proc in child:
            stop(proc, grace)
    code = proc.returncode
    return 128 + received[0] if received else (128 - code if code < 0 else code)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the process group of ``proc`` (started with start_new_session), SIGKILL after ``grace``."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)  # whatever it left in its group
    proc.wait()


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):  # already gone (PermissionError: macOS, a zombie leader)
        pass


def _die_with_parent():
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec():
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(1)

    return preexec


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
        stop(proc, grace=30)
