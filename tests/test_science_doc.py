"""docs/science.md is the repository's own account of its formulas: every citation of it names a section
that exists, and every index the schema and the views know about is documented there."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "science.md"
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", "build", "dist"}
SUFFIXES = {".py", ".sql", ".html", ".md"}
# `docs/science.md §4`, `docs/science.md §2-3`, `docs/science.md §9–§10`
CITATION = re.compile(r"docs/science\.md\s*§\s*(\d+)(?:\s*[-–]\s*§?\s*(\d+))?")
HEADING = re.compile(r"^#{2,3}\s*§(\d+)\b", re.MULTILINE)
# The sections the code cited before this document existed; their numbers must never move.
FIXED_SECTIONS = range(1, 13)
# Tables that hold bookkeeping, not results: everything else in schema.sql must be explained.
BOOKKEEPING_TABLES = {"datasets", "images", "image_labels", "models", "ingest_errors", "catalog_info", "probe_activations"}
# Per-neuron descriptors stored outside neuron_indexes (table, column).
DESCRIPTOR_COLUMNS = [("units", "a_max"), ("units", "dead"), ("units", "nf_png"), ("units", "nf_n_used"),
                      ("units", "hue"), ("units", "color_name"), ("units", "alpha_method"), ("units", "gamma_m"),
                      ("label_selectivity", "gamma"), ("label_selectivity", "m"), ("class_frequencies", "frequency"),
                      ("top_images", "rel_activation"), ("top_images", "in_nf")]


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def sections() -> set[int]:
    return {int(n) for n in HEADING.findall(doc_text())}


def repository_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if Path(name).suffix in SUFFIXES:
                yield Path(folder) / name


def citations() -> list[tuple[str, int, int]]:
    """(file:line, first section, last section) of every `docs/science.md §n[-m]` in the repository."""
    found = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for lineno, line in enumerate(text.splitlines(), start=1):
            for match in CITATION.finditer(line):
                first = int(match.group(1))
                last = int(match.group(2) or first)
                found.append((f"{path.relative_to(ROOT)}:{lineno}", first, last))
    return found


def schema_tables() -> dict[str, dict[str, str]]:
    """table -> {column: its comment} from schema.sql."""
    text = (ROOT / "schema.sql").read_text(encoding="utf-8")
    tables = {}
    for match in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", text, re.DOTALL):
        columns = {}
        for line in match.group(2).splitlines():
            col = re.match(r'\s*"?(\w+)"?\s+\w+[^,-]*,?\s*(?:--\s*(.*))?$', line)
            if col and col.group(1).upper() != "PRIMARY":
                columns[col.group(1)] = col.group(2) or ""
        tables[match.group(1)] = columns
    return tables


def index_names() -> set[str]:
    """Every index the repository names: the neuron_indexes "index" comment, the neurons view, the plugins."""
    comment = schema_tables()["neuron_indexes"]["index"]
    assert "index name:" in comment, f"neuron_indexes.index comment changed its form: {comment!r}"
    listed = set(re.findall(r"[a-z_][a-z0-9_]*", comment.split("index name:", 1)[1])) - {"plugin", "indexes"}
    pivoted = set(re.findall(r"\"index\" = '(\w+)'", (ROOT / "queries" / "neurons.sql").read_text(encoding="utf-8")))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    group = re.search(r'\[project\.entry-points\."neuron_catalog\.indexes"\]\n(.*?)(?:\n\[|\Z)', pyproject, re.DOTALL)
    plugins = set(re.findall(r"^(\w+)\s*=", group.group(1), re.MULTILINE)) if group else set()
    return listed | pivoted | plugins


def mentioned(name: str, text: str) -> bool:
    """``name`` appears inside a `code span` of the document (alone or as table.column)."""
    return re.search(r"`[^`\n]*\b" + re.escape(name) + r"\b[^`\n]*`", text) is not None


def test_the_document_keeps_the_cited_numbering():
    found = sections()
    missing = [n for n in FIXED_SECTIONS if n not in found]
    assert not missing, f"docs/science.md lacks sections {missing}"
    numbers = sorted(found)
    assert numbers == list(range(1, numbers[-1] + 1)), f"sections are not numbered 1..n without gaps: {numbers}"
    assert len(HEADING.findall(doc_text())) == len(found), "a section number is used twice"


def test_the_repository_cites_the_document():
    assert len(citations()) >= 10, "expected the code to cite docs/science.md by section"


def test_every_citation_names_an_existing_section():
    found = sections()
    bad = [f"{where}: §{a}" + (f"-{b}" if b != a else "") for where, a, b in citations()
           if a > b or any(n not in found for n in range(a, b + 1))]
    assert not bad, "citations of missing sections of docs/science.md:\n" + "\n".join(bad)


def test_every_index_is_documented():
    names = index_names()
    assert {"alpha", "gamma", "curve_area", "sparsity", "flatness", "mf_degree"} <= names
    text = doc_text()
    undocumented = sorted(n for n in names if not mentioned(n, text))
    assert not undocumented, f"indexes not described in docs/science.md: {undocumented}"


@pytest.mark.parametrize("table, column", DESCRIPTOR_COLUMNS)
def test_per_neuron_descriptors_are_documented(table, column):
    assert column in schema_tables().get(table, {}), f"schema.sql has no {table}.{column}: update this test"
    assert mentioned(column, doc_text()), f"{table}.{column} is not described in docs/science.md"


def test_every_result_table_is_documented():
    text = doc_text()
    tables = set(schema_tables()) - BOOKKEEPING_TABLES
    undocumented = sorted(t for t in tables if not mentioned(t, text))
    assert not undocumented, f"schema tables not described in docs/science.md: {undocumented}"
