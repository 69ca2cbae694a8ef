import json
import re
from pathlib import Path

from typer.testing import CliRunner

from ingest.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def test_query_formats(tmp_path, planted_folder):
    cat = str(tmp_path / "c.duckdb")
    r = runner.invoke(app, ["ingest", "--model", "tests.planted:planted", "--layers", "0", "--image-size", "32",
                            "--workers", "0", "-q", "--data", str(planted_folder), "--catalog", cat,
                            "--name", "p"])
    assert r.exit_code == 0, r.output
    assert "indexed 3 neurons in 1 layers of 'p' on 30 images" in r.output
    sql = "SELECT unit, dead, nf_png FROM neurons ORDER BY unit"
    r = runner.invoke(app, ["query", sql, "--catalog", cat, "--format", "json"])
    rows = json.loads(r.stdout)
    assert [row["unit"] for row in rows] == [0, 1, 2] and rows[2]["dead"] is True and rows[2]["nf_png"] is None
    r = runner.invoke(app, ["query", sql, "--catalog", cat, "--format", "csv"])
    assert r.stdout.splitlines()[0] == "unit,dead,nf_png"
    r = runner.invoke(app, ["query", sql, "--catalog", cat])
    assert re.search(r"^0\s+False\s+<\d+ bytes>$", r.stdout, re.M) and "(3 rows)" in r.stdout
    r = runner.invoke(app, ["query", "SELECT nope FROM neurons", "--catalog", cat])
    assert r.exit_code == 2 and "nope" in r.output
    r = runner.invoke(app, ["query", "SELECT 1", "--catalog", str(tmp_path / "missing.duckdb")])
    assert r.exit_code == 2 and "no catalogue" in r.output


def test_readme_documents_every_option():
    readme = (ROOT / "README.md").read_text()
    for command in ("ingest", "query", "demo", "publish", "serve", "plot", "merge", "analyze filter-tree", "analyze ica",
                    "analyze similarity", "visualize", "gradcam", "compare", "ablate", "analyze index",
                    "analyze label-hierarchy"):
        help_text = runner.invoke(app, command.split() + ["--help"], terminal_width=200).output
        for option in re.findall(r"(--[a-z][a-z-]+)", help_text):
            if option != "--help":
                assert option in readme, f"README does not document `neurocat {command} {option}`"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", readme, re.S).group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text()
