"""The wheel, installed for real (not editable), runs ingest, query, publish and serve from outside
the checkout: the SQL, the Datasette plugin and templates and the resources must be inside it."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from catalog import SCHEMA_VERSION
from tests.conftest import planted_images

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def source_copy(dest: Path) -> Path:
    """The files git would commit (tracked or new, not ignored), symlinks kept, so the build leaves
    nothing in the checkout and sees nothing ignored (no .venv, no stale build/)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src, dst = ROOT / name, dest / name
        if not os.path.lexists(src):  # deleted in the work tree, not yet committed
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return dest


def venv_with_dependencies(venv: Path, skip: set[str]) -> Path:
    """A fresh venv whose site-packages links to this environment's packages (torch and all) except
    the project itself, so installing the wheel with --no-deps gives a complete install in seconds."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name
        if (name in skip or name.startswith(("__editable__", "neuron_catalog")) or name == "__pycache__"
                or (target / name).exists()):
            continue
        (target / name).symlink_to(entry)
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = source_copy(tmp / "src")
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--wheel-dir", str(dist), str(src)], check=True, capture_output=True)
    (wheel,) = dist.glob("neuron_catalog-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    python = venv_with_dependencies(tmp / "venv", top_level)
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True)
    work = tmp / "work"
    work.mkdir()
    shutil.copy(ROOT / "tests" / "planted.py", work / "planted_net.py")
    planted_images(work / "data", per_class=6)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {"wheel": wheel, "names": names, "venv": tmp / "venv", "python": python, "work": work, "env": env}


def neurocat(installed, *args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(installed["venv"] / "bin" / "neurocat"), *args], cwd=installed["work"],
                            env=installed["env"], capture_output=True, text=True, timeout=300)
    assert not check or result.returncode == 0, result.stderr
    return result


def test_wheel_holds_the_sql_the_site_and_the_resources(installed):
    names = set(installed["names"])
    assert {"catalog/sql/schema.sql", "catalog/sql/queries/neurons.sql", "catalog/datasette/neurocat_pages.py",
            "catalog/datasette/templates/neuron.html", "catalog/datasette/templates/model.html",
            "catalog/datasette/templates/compare.html",
            "ingest/resources/imagenet_wordnet.csv"} <= names
    assert {f"catalog/sql/queries/{p.name}" for p in (ROOT / "queries").glob("*.sql")} <= names
    assert not any(n.startswith(("tests/", "queries/", "schema.sql")) for n in names)  # nothing top-level but packages


def test_installed_code_is_the_wheels(installed):
    work, venv = installed["work"], installed["venv"].resolve()
    assert not work.resolve().is_relative_to(ROOT)
    out = subprocess.run([str(installed["python"]), "-c",
                          "import catalog, catalog.site, ingest.labels, torch; "
                          "print(catalog.__file__); print(catalog.site.HERE); print(ingest.labels.WORDNET_FILE); "
                          "print(torch.__file__)"],
                         cwd=work, env=installed["env"], check=True, capture_output=True, text=True).stdout.split()
    for path in out[:3]:
        assert Path(path).resolve().is_relative_to(venv), path
        assert not Path(path).resolve().is_relative_to(ROOT), path
    assert Path(out[3]).exists()  # dependencies come from the linked environment


def test_ingest_query_publish_serve_from_the_wheel(installed):
    neurocat(installed, "ingest", "--model", "planted_net:planted", "--data", "data", "--name", "planted",
             "--image-size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu", "--top-n", "6",
             "--catalog", "cat.duckdb", "--quiet")
    rows = json.loads(neurocat(installed, "query", "SELECT layer, count(*) AS n, count(*) FILTER (WHERE dead) AS dead "
                               "FROM neurons GROUP BY layer", "--catalog", "cat.duckdb", "--format", "json").stdout)
    assert rows == [{"layer": "0", "n": 3, "dead": 1}]  # the planted conv: red, edge, dead
    stamp = neurocat(installed, "query", "SELECT schema_version FROM catalog_info", "--catalog", "cat.duckdb",
                     "--format", "csv").stdout.split()
    assert stamp == ["schema_version", str(SCHEMA_VERSION)]
    assert "already at schema version" in neurocat(installed, "migrate", "cat.duckdb").stdout

    neurocat(installed, "publish", "--catalog", "cat.duckdb")
    work = installed["work"]
    lite = sqlite3.connect(work / "cat.db")
    views = {r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
    assert {p.stem for p in (ROOT / "queries").glob("*.sql")} - {"neurons"} <= views
    assert lite.execute("SELECT count(*) FROM neurons").fetchone() == (3,)
    metadata = json.loads((work / "cat.metadata.json").read_text())
    assert "primary label" in metadata["databases"]["cat"]["tables"]["images"]["columns"]["label"]  # schema.sql's

    port = _free_port()
    server = subprocess.Popen([str(installed["venv"] / "bin" / "neurocat"), "serve", "--catalog", "cat.duckdb",
                               "--port", str(port)], cwd=work, env=installed["env"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/-/versions.json", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "datasette did not start"
                time.sleep(0.3)
        plugins = json.loads(urllib.request.urlopen(base + "/-/plugins.json", timeout=10).read())
        assert "neurocat_pages.py" in {p["name"] for p in plugins}
        page = urllib.request.urlopen(base + "/-/neuron?model=planted&dataset=data&layer=0&unit=0", timeout=30)
        assert page.status == 200 and 'id="nf"' in page.read().decode()  # the plugin's route and our template
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
