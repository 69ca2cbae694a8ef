"""The catalogue side stands without torch and ingest: its read API, its image reading, its site."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import catalog
from catalog import plots
from catalog.reading import CatalogLookupError
from ingest import data
from ingest.data import open_images
from ingest.errors import UsageError
from ingest.pipeline import ingest
from ingest.visualize import choose_units

ROOT = Path(__file__).resolve().parent.parent

ISOLATED = r"""
import importlib.util, json, sys
import catalog, catalog.catalog, catalog.compare, catalog.plots, catalog.publish, catalog.reading, catalog.site
spec = importlib.util.spec_from_file_location("neurocat_pages", "catalog/datasette/neurocat_pages.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
path, sheet = sys.argv[1], sys.argv[2]
with catalog.open(path, read_only=True) as cat:  # use it, so lazy imports happen too
    run = cat.run("planted")
    tops = cat.top_images("planted", run["dataset"], "0", units=[0], top=4)
    info = cat.dataset_info(run["dataset"])
    png = catalog.plots.contact_sheet(info["root"], run["image_size"], zip(
        *(tops.column(c).to_pylist() for c in ("path", "crop_top", "crop_left", "crop_size"))))
    open(sheet, "wb").write(png)
    figures = [len(cat.figure(name, "planted")) for name in catalog.plots.FIGURES]
    neurons = cat.neurons("planted", run["dataset"], where="NOT dead").num_rows
print(json.dumps({"modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ingest", "torchvision")),
                  "figures": figures, "neurons": neurons}))
"""


@pytest.fixture
def planted_catalog(tmp_path, planted_folder, planted_model, fast_options):
    path = tmp_path / "c.duckdb"
    ingest(planted_model, open_images(planted_folder), path, "planted", ["0"], fast_options)
    return path


def test_catalog_imports_and_runs_without_torch_or_ingest(planted_catalog, tmp_path):
    sheet = tmp_path / "sheet.png"
    out = subprocess.run([sys.executable, "-c", ISOLATED, str(planted_catalog), str(sheet)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["modules"] == []
    assert all(n > 1000 for n in result["figures"]) and result["neurons"] == 2
    with Image.open(sheet) as im:
        assert im.size == (960, 96)
        cells = np.asarray(im.convert("RGB"))
    assert cells[:, :4 * 96].std() > 0 and (cells[:, 4 * 96:] == 255).all()  # four crops, then blank


def rotated_exif():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90°
    return exif


def _images(root: Path) -> list[Path]:
    """Images of every kind read_rgb handles, at sizes that resize up, down, and not at all; JPEGs large
    enough to be decoded at a reduced scale."""
    rng = np.random.default_rng(3)
    root.mkdir()
    out = []

    def save(name, im, **kw):
        out.append(root / name)
        im.save(out[-1], **kw)

    save("up.png", Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)))
    save("down.png", Image.fromarray(rng.integers(0, 256, (70, 101, 3), dtype=np.uint8)))
    save("tall.png", Image.fromarray(rng.integers(0, 256, (97, 41, 3), dtype=np.uint8)))
    save("exact.png", Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    save("rgba.png", Image.fromarray(rng.integers(0, 256, (45, 38, 4), dtype=np.uint8), "RGBA"))
    save("gray16.png", Image.fromarray(rng.integers(0, 65536, (40, 50), dtype=np.uint16)))
    save("gray.png", Image.fromarray(rng.integers(0, 256, (50, 40), dtype=np.uint8), "L"))
    save("large.jpg", Image.fromarray(rng.integers(0, 256, (150, 230, 3), dtype=np.uint8)), quality=90)
    save("large-rotated.jpg", Image.fromarray(rng.integers(0, 256, (140, 260, 3), dtype=np.uint8)),
         exif=rotated_exif(), quality=90)
    save("cmyk.jpg", Image.fromarray(rng.integers(0, 256, (36, 60, 4), dtype=np.uint8), "CMYK"), quality=90)
    palette = Image.fromarray(rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)).quantize(16)
    palette.info["transparency"] = 3
    save("palette.png", palette, transparency=3)
    save("rotated.jpg", Image.fromarray(rng.integers(0, 256, (30, 55, 3), dtype=np.uint8)), exif=rotated_exif(),
         quality=95)
    return out


@pytest.mark.parametrize("size", [32, 17])
def test_model_view_equals_ingest_pixel_for_pixel(tmp_path, size):
    for path in _images(tmp_path / "images"):
        mine = np.asarray(plots.model_view(plots.read_rgb(path, size), size))
        theirs = data.model_view(data.read_rgb(path, size), size).permute(1, 2, 0).numpy()
        assert mine.shape == (size, size, 3) and mine.dtype == np.uint8, path.name
        assert np.array_equal(mine, theirs), path.name
    assert plots.BACKGROUND == data.BACKGROUND


def test_contact_sheet_crops_what_ingest_saw(tmp_path):
    paths = _images(tmp_path / "images")
    # boxes inside, across the border and beyond it (padding), as receptive fields are
    rows = [(p.name, top, left, crop) for p, (top, left, crop) in zip(
        paths, [(0, 0, 8), (-3, 5, 11), (20, 25, 16), (-5, -5, 42), (10, 0, 5), (3, 3, 3), (30, 30, 7),
                (0, 16, 16), (-2, -2, 5), (12, 4, 20), (1, 2, 30), (-4, 9, 13)])]
    assert len(rows) == len(paths) == 12  # two rows of cells
    sheet = Image.open(io.BytesIO(plots.contact_sheet(str(tmp_path / "images"), 32, rows, cell=24)))
    for i, (name, top, left, crop) in enumerate(rows):
        view = data.model_view(data.read_rgb(tmp_path / "images" / name, 32), 32)
        view = Image.fromarray(view.permute(1, 2, 0).numpy())
        canvas = Image.new("RGB", (crop, crop), data.BACKGROUND)
        canvas.paste(view, (-left, -top))
        cell = sheet.crop((i % 10 * 24, i // 10 * 24, i % 10 * 24 + 24, i // 10 * 24 + 24))
        assert np.array_equal(np.asarray(cell), np.asarray(canvas.resize((24, 24), Image.Resampling.BILINEAR))), name
    # a file gone since the ingest leaves its cell blank, and the sheet is still drawn
    gone = plots.contact_sheet(str(tmp_path), 32, [("nope.png", 0, 0, 8)], cell=24)
    assert (np.asarray(Image.open(io.BytesIO(gone))) == 255).all()


def test_select_units_and_its_errors(planted_catalog):
    with catalog.open(planted_catalog, read_only=True) as cat:
        ds = cat.run("planted")["dataset"]
        assert cat.select_units("planted", ds, "0") == [0, 1, 2]
        assert cat.select_units("planted", ds, "0", [2, 0]) == [2, 0]
        assert cat.select_units("planted", ds, "0", where="alpha > 0.5") == [0]  # the red detector
        assert cat.select_units("planted", ds, "0", [1, 2], where="NOT dead") == [1]
        # names in `where` are the neurons view's, even those the layers table shares
        assert cat.select_units("planted", ds, "0", where="layer = '0' AND model = 'planted' AND dead") == [2]
        with pytest.raises(CatalogLookupError, match="units 0-2; not \\[3\\]"):
            cat.select_units("planted", ds, "0", [1, 3])
        with pytest.raises(CatalogLookupError, match="ingested layers: 0"):
            cat.select_units("planted", ds, "1")
        with pytest.raises(CatalogLookupError, match="not a valid condition"):
            cat.select_units("planted", ds, "0", where="no_such_column > 1")
        with pytest.raises(UsageError, match="not a valid condition"):  # what the CLI prints
            choose_units(cat, "planted", ds, "0", None, "no_such_column > 1")
        with pytest.raises(CatalogLookupError, match="no data set 'nope'.*planted"):
            cat.dataset_info("nope")
        assert cat.neurons("planted", ds, units=[]).num_rows == 0
        assert cat.top_images("planted", ds, units=[]).num_rows == 0
