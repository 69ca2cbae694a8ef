"""`neurocat serve` as a real process: a signal to neurocat stops Datasette too, bounded in time.

No psutil here: processes are read from /proc (Linux).
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from catalog.site import exposure_warning, free_port

NEUROCAT = Path(sys.executable).with_name("neurocat")
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from catalog.site import prepare
    from ingest.data import open_images
    from ingest.models import LoadedModel
    from ingest.pipeline import IngestOptions, ingest
    from tests.conftest import planted_images
    from tests.planted import planted

    tmp = tmp_path_factory.mktemp("serve")
    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu")
    ingest(model, open_images(planted_images(tmp / "data")), tmp / "c.duckdb", "planted", ["0"], opts)
    prepare(tmp / "c.duckdb")  # published up front: serve starts without publishing
    return tmp / "c.duckdb"


def children(pid: int) -> list[int]:
    """Every living descendant of ``pid``, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def datasettes(catalogue: Path) -> list[int]:
    """Living processes serving this catalogue's published copy, whoever their parent."""
    db = str(catalogue.with_suffix(".db"))
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and "datasette" in cmdline(int(p.name)) and db in cmdline(int(p.name))
            and alive(int(p.name))]


def accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def start(catalogue: Path, *args: str, logs: Path) -> subprocess.Popen:
    # Its own session, so that cleanup can reach neurocat's group; the signal under test goes to its PID only.
    return subprocess.Popen([str(NEUROCAT), "serve", "--catalog", str(catalogue), *args],
                            stdout=(logs / "out.txt").open("w"), stderr=(logs / "err.txt").open("w"),
                            start_new_session=True)


def cleanup(proc: subprocess.Popen, catalogue: Path) -> None:
    pids = [proc.pid, *children(proc.pid), *datasettes(catalogue)]
    for pid in pids:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    proc.wait(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_neurocat_stops_datasette(published, tmp_path, signum):
    port = free_port()
    proc = start(published, "--port", str(port), logs=tmp_path)
    try:
        def answers():
            assert proc.poll() is None, (tmp_path / "err.txt").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/versions.json", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        assert wait_for(answers, 60, 0.3), "datasette never answered"
        served = [p for p in children(proc.pid) if "datasette" in cmdline(p)]
        assert served, "datasette is not a child of neurocat"
        os.kill(proc.pid, signum)  # neurocat only, as `kill -TERM <pid>` would
        code = proc.wait(timeout=30)
        assert wait_for(lambda: not accepts(port), 10), f"port {port} still accepts connections"
        assert wait_for(lambda: not any(alive(p) for p in served) and not datasettes(published), 10), \
            "a datasette process outlived neurocat"
        assert code == 128 + signum  # a clean exit of its own, not killed by the signal
    finally:
        cleanup(proc, published)


def test_serving_beyond_loopback_warns(published, tmp_path):
    assert exposure_warning("0.0.0.0") == \
        "serving on 0.0.0.0: anyone who can reach this machine can read the catalogue"
    assert exposure_warning("::") and exposure_warning("192.0.2.7") and exposure_warning("example.org")
    assert not any(exposure_warning(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    port = free_port()
    proc = start(published, "--host", "0.0.0.0", "--port", str(port), logs=tmp_path)
    try:
        # Stopped as soon as the warning shows: Datasette has barely started, if at all.
        assert wait_for(lambda: "warning:" in (tmp_path / "err.txt").read_text() or proc.poll() is not None, 60, 0.05)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        err = (tmp_path / "err.txt").read_text()
        assert err.count("warning: serving on 0.0.0.0: anyone who can reach this machine can read the catalogue") \
            == 1, err
        assert wait_for(lambda: not datasettes(published), 10)
        assert "serving http://0.0.0.0:" in (tmp_path / "out.txt").read_text()
    finally:
        cleanup(proc, published)


def test_loopback_serves_without_warning(published, tmp_path):
    port = free_port()
    proc = start(published, "--port", str(port), logs=tmp_path)
    try:
        assert wait_for(lambda: accepts(port) or proc.poll() is not None, 60, 0.3) and proc.poll() is None
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        assert "warning" not in (tmp_path / "err.txt").read_text()
    finally:
        cleanup(proc, published)
