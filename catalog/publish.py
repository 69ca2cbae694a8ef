"""Publish a DuckDB catalogue as a SQLite file for Datasette.

DuckDB stays the source of truth. The copy gets every table, every view of queries/ (the same
SQL text), indexes, full-text search over class and colour names, and `ANALYZE`; it is written
to a temporary file and renamed over the old one, so a server never sees half a file.

Tables a user added to the catalogue's own schema (`main`) are copied too, under their own names,
quoted (`"my notes"`, a column `a"b`); values SQLite has no type for (lists, structs) become JSON
text. Other schemas (`CREATE SCHEMA extra`) are not the catalogue's and are left out, as are a
user's views (DuckDB SQL) and tables whose names SQLite reserves (`sqlite_*`) or that publish
itself writes (`units_fts`, `idx_*`).
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import re
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path

from .catalog import OWN_SCHEMA, SCHEMA, connect_sandboxed, create_views, quote as _q, view_files

INDEXES = {
    "units": [("model", "dataset", "layer", "unit"), ("color_name",)],
    "neuron_indexes": [("model", "dataset", "layer", "unit", "index"), ("index", "value")],
    "top_images": [("model", "dataset", "layer", "unit", "rank"), ("dataset", "image_id")],
    "class_frequencies": [("model", "dataset", "layer", "unit"), ("label", "frequency")],
    "images": [("dataset", "image_id"), ("label",)],
    "similarity_pairs": [("model", "dataset", "layer", "unit_a", "rank")],
    "class_distances": [("model", "dataset", "label_a", "distance")],
    "ica_components": [("model", "dataset", "layer", "unit")],
    "visualizations": [("model", "dataset", "layer", "unit", "kind")],
    "filter_tree_nodes": [("model", "dataset", "label", "node")],
    "layers": [("model", "dataset", "layer_index")],
}
MATERIALISED = ("neurons",)
FULL_TEXT = {"class_frequencies": ["label"], "units": ["color_name"], "images": ["label", "path"]}


def _sqlite_value(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, int) and not -2**63 <= v < 2**63:  # HUGEINT, UBIGINT: past SQLite's integers
        return str(v)
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (dt.timedelta, uuid.UUID)):
        return str(v)
    if isinstance(v, (list, tuple, dict)):  # a user table's LIST, STRUCT or MAP column
        return json.dumps(v, default=str)
    return v


def _reserved(table: str) -> bool:
    """Names SQLite keeps for itself or that publish writes (FTS tables and their shadows, indexes)."""
    name = table.lower()
    return name.startswith(("sqlite_", "idx_")) or any(name.startswith(f"{t}_fts") for t in FULL_TEXT)


def publish(catalog_path: str | Path, out: str | Path, batch_rows: int = 50_000) -> Path:
    """Write ``out`` (SQLite) from the DuckDB catalogue; returns ``out``."""
    out = Path(out)
    source = connect_sandboxed(catalog_path)  # reads the catalogue only; compatible with read-only Catalogs
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        lite = sqlite3.connect(tmp)
        lite.execute("PRAGMA journal_mode = OFF")
        lite.execute("PRAGMA synchronous = OFF")
        tables = [r[0] for r in source.execute(
            f"SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND {OWN_SCHEMA} "
            "ORDER BY 1").fetchall()]
        skipped = [t for t in tables if _reserved(t)]
        if skipped:
            print(f"publish: left out tables whose names SQLite or publish reserves: {', '.join(skipped)}",
                  file=sys.stderr)
        tables = [t for t in tables if t not in skipped]
        for table in tables:
            columns = source.execute(
                f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? AND {OWN_SCHEMA} "
                "ORDER BY ordinal_position", [table]).fetchall()
            lite.execute(f"CREATE TABLE {_q(table)} ({', '.join(f'{_q(c)} {_affinity(t)}' for c, t in columns)})")
            insert = f"INSERT INTO {_q(table)} VALUES ({', '.join('?' * len(columns))})"
            reader = source.sql(f"SELECT {', '.join(_q(c) for c, _ in columns)} FROM {_q(table)}").to_arrow_reader(
                batch_rows)
            for batch in reader:
                cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
                lite.executemany(insert, [tuple(_sqlite_value(v) for v in row) for row in zip(*cols)])
        for table, indexes in INDEXES.items():
            if table in tables:
                for cols in indexes:
                    name = f"idx_{table}_{'_'.join(cols)}"
                    lite.execute(f"CREATE INDEX {name} ON {table} ({', '.join(_q(c) for c in cols)})")
        for table, cols in FULL_TEXT.items():
            if table in tables:
                lite.execute(f"CREATE VIRTUAL TABLE {table}_fts USING fts5({', '.join(cols)}, "
                             f"content={table}, content_rowid=rowid)")
                lite.execute(f"INSERT INTO {table}_fts (rowid, {', '.join(cols)}) "
                             f"SELECT rowid, {', '.join(cols)} FROM {table}")
        # The pivot behind `neurons` is cheap in DuckDB, slow in SQLite on millions of rows: the read-only
        # copy stores its result (same SQL text) and indexes it.
        names = [r[0] for r in lite.execute('SELECT DISTINCT "index" FROM neuron_indexes ORDER BY 1').fetchall()]
        create_views(lite.execute, "CREATE VIEW", materialise=MATERIALISED, more_indexes=names)
        for cols in (("model", "dataset", "layer", "unit"), ("layer", "gamma"), ("layer", "alpha"), ("gamma",),
                     ("alpha",), ("color_name",), ("faceted",)):
            lite.execute(f"CREATE INDEX idx_neurons_{'_'.join(cols)} ON neurons ({', '.join(_q(c) for c in cols)})")
        lite.commit()
        lite.execute("ANALYZE")
        lite.commit()
        lite.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return out


def _affinity(duck_type: str) -> str:
    t = duck_type.upper()
    if t in ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "UINTEGER"):
        return "INTEGER"
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return "REAL"
    if t == "BLOB":
        return "BLOB"
    return "TEXT"


def column_descriptions() -> dict[str, dict[str, str]]:
    """Table -> column -> the comment after the column in schema.sql."""
    out: dict[str, dict[str, str]] = {}
    table = None
    for line in SCHEMA.read_text().splitlines():
        m = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", line)
        if m:
            table = m.group(1)
            out[table] = {}
            continue
        m = re.match(r'\s+"?(\w+)"?\s+[A-Z]+[^-]*--\s*(.+)$', line)
        if table and m:
            out[table][m.group(1)] = m.group(2).strip()
    return out


def view_descriptions() -> dict[str, str]:
    """View -> its leading SQL comment."""
    out = {}
    for name, sql in view_files().items():
        lines = [ln[2:].strip() for ln in sql.splitlines() if ln.startswith("--") and "@more-indexes" not in ln]
        out[name] = " ".join(lines)
    return out


# Every canned query is of one data set (and one model where it reads per-model rows): the same network
# ingested on two data sets keeps two runs, and layer names, units and labels repeat across them.
CANNED = {
    "selective_neurons": {
        "title": "Neurons of a layer above γ and α",
        "description": "The mission query: class- and colour-selective neurons of one layer of a model on a data set.",
        "sql": "SELECT model, dataset, layer, unit, gamma, alpha, hue, color_name, nf_png FROM neurons "
               "WHERE model = :model AND dataset = :dataset AND layer = :layer "
               "AND gamma > CAST(:gamma AS REAL) AND alpha > CAST(:alpha AS REAL) ORDER BY gamma DESC, alpha DESC",
    },
    "top_images_of_neuron": {
        "title": "Top images of a neuron",
        "sql": "SELECT t.rank, i.path, i.label, t.activation, t.rel_activation, t.crop_top, t.crop_left, t.crop_size "
               "FROM top_images t JOIN images i ON i.dataset = t.dataset AND i.image_id = t.image_id "
               "WHERE t.model = :model AND t.dataset = :dataset AND t.layer = :layer "
               "AND t.unit = CAST(:unit AS INTEGER) ORDER BY t.rank",
    },
    "similar_neurons": {
        "title": "Neurons most similar to a neuron",
        "sql": "SELECT s.rank, s.model, s.dataset, s.layer, s.unit_b AS unit, s.pearson, s.euclidean, n.alpha, "
               "n.gamma, n.nf_png FROM similarity_pairs s JOIN neurons n ON n.model = s.model AND n.dataset = s.dataset "
               "AND n.layer = s.layer AND n.unit = s.unit_b "
               "WHERE s.model = :model AND s.dataset = :dataset AND s.layer = :layer "
               "AND s.unit_a = CAST(:unit AS INTEGER) ORDER BY s.rank",
    },
    "neurons_selective_to_class": {
        "title": "Neurons selective to a class of a data set",
        "sql": "SELECT c.model, c.dataset, c.layer, c.unit, c.frequency, c.count, n.gamma, n.nf_png "
               "FROM class_frequencies c JOIN neurons n ON n.model = c.model AND n.dataset = c.dataset "
               "AND n.layer = c.layer AND n.unit = c.unit "
               "WHERE c.dataset = :dataset AND c.label = :label ORDER BY c.frequency DESC LIMIT 200",
    },
}


def metadata(db_name: str) -> dict:
    """Datasette metadata: titles, column descriptions from schema.sql, canned queries, plugin settings."""
    tables = {t: {"columns": cols, "facets": []} for t, cols in column_descriptions().items()}
    for t, facets in {"units": ["dataset", "layer", "color_name"], "layers": ["model", "dataset"],
                      "models": ["dataset"]}.items():
        tables[t]["facets"] = facets
    for view, text in view_descriptions().items():
        tables[view] = {"description": text}
    tables["neurons"]["facets"] = ["model", "dataset", "layer", "color_name", "faceted"]
    tables["color_selective_neurons"]["facets"] = ["model", "dataset", "layer", "color_name"]
    for t, cols in FULL_TEXT.items():
        tables[t]["fts_table"] = f"{t}_fts"
        tables[t]["searchmode"] = "raw"
    return {
        "title": "neuron-catalog",
        "description": "Neurons of trained CNNs: top images, Neuron Features, colour and class selectivity, "
                       "multi-faceted measures. Open a model's page at /-/model (model and dataset), a neuron's at "
                       "/-/neuron (model, dataset, layer, unit).",
        "databases": {db_name: {"tables": tables, "queries": CANNED}},
        "plugins": {"datasette-render-images": {"size_limit": 4_000_000}},
    }


def write_metadata(path: Path, db_name: str) -> Path:
    path.write_text(json.dumps(metadata(db_name), indent=2, ensure_ascii=False))
    return path
