"""Screenshots of the main pages for the README: `neurocat demo`, then

    PYTHONPATH=. python docs/screenshots.py demo.duckdb

Serves the catalogue on a free loopback port, opens the pages in Debian's Chromium, stops the server.
"""
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from catalog.site import prepare, running
from tests.test_site import CHROMIUM

PAGES = {
    "front-page": "/",
    "neurons-table": "/{db}/neurons?layer=_blocks.3._project_conv&_sort_desc=alpha",
    "neuron-page": "/-/neuron?model=efficientnet-lite0&dataset=demo&layer=_blocks.3._project_conv&unit=22",
    "model-page": "/-/model?model=efficientnet-lite0&dataset=demo",
}


def main(catalog_path: str, out: str = "docs") -> None:
    db, metadata, _ = prepare(Path(catalog_path))
    profile = tempfile.mkdtemp(prefix="neurocat-chromium-")
    try:
        with running(db, metadata) as base, sync_playwright() as p:
            context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update"], viewport={"width": 1280, "height": 900})
            page = context.new_page()
            for name, path in PAGES.items():
                page.goto(base + path.format(db=db.stem))
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(Path(out) / f"{name}.png"), full_page=name not in ("neurons-table", "front-page"))
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
