"""One writer per catalogue: a second ingest or merge fails at once naming the first; a killed
writer's lock does not block; names that sanitise alike keep their own run folders."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import catalog
from catalog.lock import CatalogueLocked, holder, lock_path, writer_lock
from ingest.data import open_images
from ingest.errors import UsageError
from ingest.pipeline import IngestOptions, ingest, run_dir_for
from tests.test_resume import many_images

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
PLANTED = ["--model", "tests.planted:planted", "--layers", "0", "--image-size", "32", "--workers", "0", "-q"]


def neurocat(*args):
    return [sys.executable, "-m", "ingest.cli", *args]


def slow_ingest(data, cat, top_n=7):
    """A real ingest that scans one image per batch: it holds the lock for seconds."""
    return subprocess.Popen(neurocat("ingest", "--data", str(data), "--catalog", str(cat), *PLANTED,
                                     "--batch-size", "1", "--top-n", str(top_n)),
                            env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_lock(cat, proc):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(lock_path(cat).read_text() or "{}").get("pid") == proc.pid:
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.01)
    raise AssertionError(f"the first ingest never took the lock: {proc.communicate()}")


def consistent(cat_path, model):
    """models.top_n equals the ranks top_images holds, for every unit."""
    with catalog.open(cat_path, read_only=True) as cat:
        top_n = cat.query("SELECT top_n FROM models WHERE model = ?", [model]).column(0).to_pylist()
        ranks = cat.query("SELECT max(rank) + 1 AS ranks, count(*) AS n FROM top_images WHERE model = ? GROUP BY unit",
                          [model]).to_pylist()
    assert len(top_n) == 1
    assert ranks and all(r["ranks"] == top_n[0] == r["n"] for r in ranks), (top_n, ranks)
    return top_n[0]


def test_a_second_ingest_exits_2_naming_the_first(tmp_path):
    data = many_images(tmp_path / "data", n=240, size=32)
    cat = tmp_path / "c.duckdb"
    first = slow_ingest(data, cat, top_n=7)
    wait_for_lock(cat, first)
    os.kill(first.pid, signal.SIGSTOP)  # hold it mid-scan for as long as the second one takes
    try:
        assert first.poll() is None
        second = subprocess.run(neurocat("ingest", "--data", str(data), "--catalog", str(cat), *PLANTED,
                                         "--top-n", "5"), env=ENV, cwd=ROOT, capture_output=True, text=True)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr
    assert f"pid {first.pid}" in lines[0] and "neurocat ingest" in lines[0] and "since" in lines[0]
    assert consistent(cat, "tests.planted:planted") == 7  # the first run alone, untouched by the second
    assert not lock_path(cat).exists()


def test_a_merge_is_refused_while_another_process_writes(tmp_path, planted_folder):
    part = tmp_path / "part"
    subprocess.run(neurocat("ingest", "--data", str(planted_folder), "--shard", "1/1", "--out", str(part), *PLANTED),
                   env=ENV, cwd=ROOT, check=True, capture_output=True)
    cat = tmp_path / "c.duckdb"
    holder_script = ("import sys, time; from catalog.lock import writer_lock\n"
                     "with writer_lock(sys.argv[1], 'test holder'):\n print('held', flush=True); time.sleep(600)")
    other = subprocess.Popen([sys.executable, "-c", holder_script, str(cat)], env=ENV, cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        assert holder(cat)["pid"] == other.pid
        merged = subprocess.run(neurocat("merge", str(part), "--catalog", str(cat), "-q"), env=ENV, cwd=ROOT,
                                capture_output=True, text=True)
        assert merged.returncode == 2 and f"pid {other.pid}" in merged.stderr, merged.stderr
        with pytest.raises(UsageError, match=f"pid {other.pid}"):  # the library refuses too
            ingest_planted(planted_folder, cat, "p")
    finally:
        other.kill()
        other.wait()
    assert holder(cat) is None  # killed: the kernel released it
    merged = subprocess.run(neurocat("merge", str(part), "--catalog", str(cat), "-q"), env=ENV, cwd=ROOT,
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr
    assert "took over the writer lock" in merged.stderr and f"pid {other.pid}" in merged.stderr


def test_the_lock_of_a_killed_ingest_does_not_block_the_next(tmp_path):
    data = many_images(tmp_path / "data", n=240, size=32)
    cat = tmp_path / "c.duckdb"
    first = slow_ingest(data, cat)
    wait_for_lock(cat, first)
    os.killpg(first.pid, signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    assert json.loads(lock_path(cat).read_text())["pid"] == first.pid  # left behind
    again = subprocess.run(neurocat("ingest", "--data", str(data), "--catalog", str(cat), *PLANTED, "--top-n", "7"),
                           env=ENV, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "took over the writer lock" in again.stderr and f"pid {first.pid}" in again.stderr
    assert not lock_path(cat).exists()
    assert consistent(cat, "tests.planted:planted") == 7


def ingest_planted(folder, cat, name, top_n=12):
    from tests.planted import planted
    from ingest.models import LoadedModel

    model = LoadedModel(planted().eval(), "planted", "callable", None, (0.0,) * 3, (1.0,) * 3)
    opts = IngestOptions(image_size=32, batch_size=8, workers=0, progress=False, device="cpu", top_n=top_n)
    return ingest(model, open_images(folder), cat, name, ["0"], opts)


def loaded_parquet(cat, name, dataset="planted"):
    """The Parquet folders left in the run folder of ``name`` (the last load's only)."""
    return sorted(run_dir_for(cat, name, dataset).glob("run-*/models.parquet"))


def test_names_that_sanitise_alike_use_their_own_run_folders(tmp_path, planted_folder):
    cat = tmp_path / "c.duckdb"
    assert run_dir_for(cat, "tinynet:make", "planted") != run_dir_for(cat, "tinynet_make", "planted")
    assert run_dir_for(cat, "tinynet:make", "planted").parent == tmp_path / "neurocat-runs"
    ingest_planted(planted_folder, cat, "tinynet:make", top_n=4)
    ingest_planted(planted_folder, cat, "tinynet_make", top_n=6)
    for name, top_n in (("tinynet:make", 4), ("tinynet_make", 6)):
        [models] = loaded_parquet(cat, name)
        assert pq.read_table(models).column("model").to_pylist() == [name]
        assert consistent(cat, name) == top_n


def test_sequential_ingests_of_one_name_leave_a_consistent_catalogue(tmp_path, planted_folder):
    cat = tmp_path / "c.duckdb"
    ingest_planted(planted_folder, cat, "p", top_n=7)
    first = loaded_parquet(cat, "p")
    ingest_planted(planted_folder, cat, "p", top_n=5)
    assert consistent(cat, "p") == 5
    [last] = loaded_parquet(cat, "p")
    assert last not in first  # each load reads a folder of its own; older ones are removed after it
    assert pq.read_table(last).column("top_n").to_pylist() == [5]


def test_the_lock_is_reentrant_in_a_thread_and_refuses_other_threads(tmp_path):
    import threading

    cat = tmp_path / "c.duckdb"
    with writer_lock(cat, "outer"):
        with writer_lock(cat, "inner"):  # an ingest inside a command that already holds it
            assert holder(cat)["what"] == "outer"
        assert lock_path(cat).exists()
        errors = []
        thread = threading.Thread(target=lambda: errors.append(_try(cat)))
        thread.start()
        thread.join()
        assert isinstance(errors[0], CatalogueLocked) and "another thread" in str(errors[0])
    assert not lock_path(cat).exists() and holder(cat) is None


def _try(cat):
    try:
        with writer_lock(cat):
            return None
    except CatalogueLocked as exc:
        return exc
