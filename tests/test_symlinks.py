"""Symbolic links in an ImageFolder tree: every real folder and every image is indexed once, skipped
and broken links are listing problems in ingest_errors, and a data set made of links still works.

The choice for a link to a file: an image is indexed once, under its own path and label. A link to
a file that is also listed (in another class, say) is skipped and recorded, since the same pixels
under two ids would fill two top-N places of every neuron that likes them and count twice in the
class statistics; a link to a file outside the data set is indexed like a file.
"""
import os

from PIL import Image
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.data import open_images

runner = CliRunner()
PLANTED = ["--model", "tests.planted:planted", "--layers", "0", "--image-size", "32", "--workers", "0", "-q"]


def listing(folder):
    data = open_images(folder)
    return data, dict(data.problems)


def test_a_link_to_the_root_lists_nothing_twice(tmp_path, planted_folder):
    os.symlink(".", planted_folder / "selfloop")
    os.symlink("..", planted_folder / "red" / "up")  # a loop from inside a class, too
    data, problems = listing(planted_folder)
    assert len(data) == 30 and set(data.classes) == {"red", "blue", "bars"}
    assert set(problems) == {"selfloop", "red/up"}
    assert all("holds the data set (a loop)" in m for m in problems.values())

    cat = tmp_path / "c.duckdb"
    r = runner.invoke(app, ["ingest", "--data", str(planted_folder), "--catalog", str(cat), *PLANTED])
    assert r.exit_code == 0, r.output
    with catalog.open(cat, read_only=True) as c:
        assert c.query("SELECT count(*) FROM images").column(0)[0].as_py() == 30
        assert c.query("SELECT n_images FROM models").column(0)[0].as_py() == 30
        errors = c.df("SELECT path, stage FROM ingest_errors ORDER BY path")
    assert errors.path.tolist() == ["red/up", "selfloop"] and set(errors.stage) == {"listing"}


def test_a_link_from_one_class_to_another_class_folder_is_skipped(planted_folder):
    os.symlink("../blue", planted_folder / "red" / "more")
    os.symlink("blue", planted_folder / "azure")  # a class that is another class under a second name
    data, problems = listing(planted_folder)
    assert len(data) == 30 and set(data.classes) == {"red", "blue", "bars"}
    assert data.labels.count("blue") == 10 and data.labels.count("red") == 10
    assert set(problems) == {"red/more", "azure"}
    assert "the folder blue of this data set" in problems["red/more"]


def test_a_file_link_to_an_image_of_another_class_counts_once(planted_folder):
    os.symlink("../red/00.png", planted_folder / "blue" / "also-red.png")
    data, problems = listing(planted_folder)
    assert len(data) == 30 and "blue/also-red.png" not in data.paths
    assert data.labels[data.paths.index("red/00.png")] == "red"  # under its own path and label
    assert "same file as red/00.png" in problems["blue/also-red.png"]


def test_a_dangling_link_is_recorded(planted_folder):
    os.symlink("gone.png", planted_folder / "red" / "dangling.png")
    os.symlink("no-such-folder", planted_folder / "ghosts")
    data, problems = listing(planted_folder)
    assert len(data) == 30
    assert set(problems) == {"red/dangling.png", "ghosts"}
    assert all("broken symbolic link" in m for m in problems.values())


def test_links_out_of_the_root_are_followed_once(tmp_path, planted_folder):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (0, 255, 0)).save(elsewhere / f"g{i}.png")
    os.symlink(elsewhere, planted_folder / "green")              # a class that lives elsewhere
    os.symlink(elsewhere, planted_folder / "bars" / "green-too")  # the same folder again
    (planted_folder / "farm").mkdir()                             # a class made of links to files
    for i in range(2):
        os.symlink(elsewhere / f"g{i}.png", planted_folder / "farm" / f"f{i}.png")
    data, problems = listing(planted_folder)
    assert data.labels.count("green") == 4
    assert "bars/green-too" in problems and "already listed" in problems["bars/green-too"]
    # farm's links reach files also listed under green: each image once, under its real folder.
    assert data.labels.count("farm") == 0 and len(data) == 34
    assert {"farm/f0.png", "farm/f1.png"} <= set(problems)


def test_a_data_set_made_of_links_to_files_outside_it(tmp_path, planted_folder):
    farm = tmp_path / "farm"
    for label in ("red", "blue"):
        (farm / label).mkdir(parents=True)
        for f in sorted((planted_folder / label).iterdir())[:3]:
            os.symlink(f, farm / label / f.name)
    data, problems = listing(farm)
    assert len(data) == 6 and problems == {}
    assert data.paths[0] == "blue/00.png" and data.labels[0] == "blue"
