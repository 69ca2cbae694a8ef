"""Publish a DuckDB catalogue as a SQLite file for Datasette.

DuckDB stays the source of truth. The copy gets every table, every view of queries/ (the same
SQL text), indexes, full-text search over class and colour names, and `ANALYZE`; it is written
to a temporary file and renamed over the old one, so a server never sees half a file.

Tables a user added to the catalogue's own schema (`main`) are copied too, under their own names,
quoted (`"my notes"`, a column `a"b`); values SQLite has no type for (lists, structs) become JSON
text. Other schemas (`CREATE SCHEMA extra`) are not the catalogue's and are left out, as are a
user's views (DuckDB SQL) and tables whose names SQLite reserves (`sqlite_*`) or that publish
itself writes (`units_fts`, `idx_*`). `image_activations` stays in DuckDB only (``LEFT_OUT``).
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
    "orientation_tuning": [("model", "dataset", "layer", "unit", "angle")],
    "symmetry_axes": [("model", "dataset", "layer", "unit", "axis")],
    # the neuron page's partners (neurocat_pages.PARTNERS_SQL), the model page's CKA (plots.CKA_SQL, CKA_OTHERS_SQL)
    # and the compare page's layer table and strongest pairs (neurocat_pages.COMPARE_*_SQL)
    "unit_matches": [("dataset", "model_a", "layer_a", "unit_a"), ("dataset", "model_a", "model_b", "kind", "layer_a", "unit_a", "correlation")],
    "layer_cka": [("model_a", "dataset", "model_b"), ("model_b", "dataset", "model_a")],
}
MATERIALISED = ("neurons",)
# Too large for the site (images × neurons rows) and read by no view: matching reads it from DuckDB.
LEFT_OUT = ("image_activations",)
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
        tables = [t for t in tables if t not in skipped and t not in LEFT_OUT]
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
        create_views(_in_model_order(lite.execute), "CREATE VIEW", materialise=MATERIALISED, more_indexes=names)
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


def _in_model_order(execute):
    """``execute`` that stores a materialised view's rows in model order (model, dataset, layer_index,
    unit): same columns and rows as the view, and the order Datasette shows a table in by default (rowid)."""
    def run(sql: str, *args):
        m = re.match(r"CREATE TABLE (\w+) AS\n(.*)$", sql, re.S)
        if m and m.group(1) in MATERIALISED:
            sql = (f"CREATE TABLE {m.group(1)} AS SELECT v.* FROM ({m.group(2)}) AS v "
                   "LEFT JOIN layers AS l ON l.model = v.model AND l.dataset = v.dataset AND l.layer = v.layer "
                   "ORDER BY v.model, v.dataset, l.layer_index, v.layer, v.unit")
        return execute(sql, *args)
    return run


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


def table_descriptions() -> dict[str, str]:
    """Table -> the comment lines right above its CREATE TABLE in schema.sql (tables without one are left out)."""
    out, comment = {}, []
    for line in SCHEMA.read_text().splitlines():
        m = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", line)
        if m and comment:
            out[m.group(1)] = " ".join(comment)
        if line.startswith("--"):
            comment.append(line[2:].strip())
        else:
            comment = []
    return out


def view_descriptions() -> dict[str, str]:
    """View -> its leading SQL comment, whole (the `-- @more-indexes` markers inside the SELECT are not part of it)."""
    out = {}
    for name, sql in view_files().items():
        lines = [ln[2:].strip() for ln in sql.splitlines()
                 if ln.startswith("--") and not ln[2:].strip().startswith("@more-indexes")]
        out[name] = " ".join(lines)
    return out


# Columns of views that no table of schema.sql describes, in its style: the indexes (docs/science.md), which
# `neurons` has as columns (a plugin's too: orientation), and the per-layer aggregates.
INDEX_NOTES = {
    "alpha": "colour selectivity α of the Neuron Feature, 0 (none) to 1 (docs/science.md §4)",
    "gamma": "class selectivity γ of the top images, 0 (many classes) to 1 (one class) (§5)",
    "curve_area": "area under the ranked relative-activation curve, 1/N to 1 (§12)",
    "nf_self_activation": "activation on the neuron's own Neuron Feature relative to a_max, usually 0 to 1 (§12)",
    "sparsity": "Gini sparsity of the neuron's CoF row, 0 to 1 − 1/K (§6)",
    "flatness": "spectral flatness of the CoF row, about 0 to 1; −1 for an empty row (§6)",
    "mf_degree": "multi-faceted degree: flatness / sparsity, 0 or more (§6)",
    "mf_zscore": "MF degree standardised within the layer (§6)",
    "mf_pvalue": "two-sided p-value of mf_zscore (§6)",
    "color_drop": "share of the response lost when the top crops turn gray, at most 1 (§13)",
    "orientation": "orientation coherence of the Neuron Feature's structure tensor, 0 to 1 (index plugin, §16)",
    "gamma_null_mean": "mean γ when the top images' labels are drawn from the data set's class frequencies (§22)",
    "gamma_p": "Monte Carlo p-value of γ against that class-frequency null (§22)",
    "gamma_excess": "γ above its null: (γ − null mean) / (1 − null mean), about 0 for chance (§22)",
    "gamma_lo": "lower end of γ's 95 % bootstrap interval over the top images (§22)",
    "gamma_hi": "upper end of γ's 95 % bootstrap interval (§22)",
    "alpha_lo": "lower end of α's 95 % bootstrap interval over the NF crops (§22)",
    "alpha_hi": "upper end of α's 95 % bootstrap interval (§22)",
    "orientation_index": "1 − mean retention of the response over rotations of the field, 0 to 1 (§21)",
    "preferred_angle": "the rotation other than 0° that keeps most of the response, degrees (§21)",
    "orientation_selectivity": "1 − circular variance of the retention curve on doubled angles, 0 to 1 (§21)",
    "symmetry_index": "mean retention of the response over mirrors about four axes, 0 to 1 (§21)",
}
INDEX_FALLBACK = "index {} of neuron_indexes (docs/science.md)"  # one added to neurons.sql without a note here
COLUMN_NOTES = {
    **INDEX_NOTES,
    "faceted": "multi-faceted when the MF degree is above the layer's mean (mf_zscore > 0), else single-faceted",
    "mean_alpha": "mean α over the layer's live neurons",
    "mean_gamma": "mean γ over the layer's live neurons",
    "color_selective_fraction": "share of the layer's neurons, dead ones included, with α at or above the model's "
                                "colour threshold",
}
# Columns the site adds to a table page (HTML only; JSON and CSV keep the table's own columns).
PICTURE_NOTES = {
    "crop": "the top image's receptive-field crop, as the model saw it",
    "nf_a": "Neuron Feature of unit_a",
    "nf_b": "Neuron Feature of unit_b",
}
# Tables whose columns describe a view's column of the same name, first match wins.
_DESCRIBING = ("units", "layers", "models", "top_images", "images", "class_frequencies", "similarity_pairs",
               "layer_similarity", "datasets")


def view_columns() -> dict[str, list[str]]:
    """View -> its columns, from an empty in-memory copy of the schema."""
    import duckdb

    from .catalog import schema_tables

    con = duckdb.connect(":memory:")
    try:
        for sql in schema_tables().values():
            con.execute(sql)
        create_views(con.execute)
        return {v: [r[0] for r in con.execute(f"DESCRIBE {v}").fetchall()] for v in view_files()}
    finally:
        con.close()


def view_column_descriptions(tables: dict[str, dict[str, str]] | None = None) -> dict[str, dict[str, str]]:
    """View -> column -> description: COLUMN_NOTES, else the description of the same column in a table."""
    tables = tables or column_descriptions()
    out = {}
    for view, columns in view_columns().items():
        described = {}
        for c in columns:
            text = COLUMN_NOTES.get(c) or next((tables[t][c] for t in _DESCRIBING if c in tables.get(t, {})), None)
            if text:
                described[c] = text
        if view == "neurons":  # plugin indexes are columns of a catalogue's neurons, not of the empty schema's
            described.update({c: text for c, text in INDEX_NOTES.items() if c not in described})
            described.update({c: INDEX_FALLBACK.format(c) for c in columns if c not in described})
        out[view] = described
    return out


# How the site shows a table: its columns in this order (names not listed follow in the table's order;
# crop, nf_a, nf_b are pictures the site adds), without Datasette's row-link and rowid columns.
DISPLAY = {
    "neurons": ["model", "dataset", "layer", "unit", "nf_png", "alpha", "hue", "color_name", "gamma", "gamma_m",
                "sparsity", "mf_degree", "faceted", "a_max", "dead", "flatness", "mf_zscore", "mf_pvalue",
                "curve_area", "nf_self_activation", "color_drop"],
    "top_images": ["model", "dataset", "layer", "unit", "rank", "crop", "image_id", "activation", "rel_activation",
                   "in_nf", "crop_top", "crop_left", "crop_size", "y", "x"],
    "similarity_pairs": ["model", "dataset", "layer", "unit_a", "nf_a", "rank", "unit_b", "nf_b", "pearson",
                         "euclidean"],
    "layer_summary": ["model", "dataset", "layer_index", "layer", "channels", "mean_alpha", "mean_gamma",
                      "color_selective_fraction", "n_dead", "rf_size", "rf_stride"],
    "color_selective_neurons": ["model", "dataset", "layer", "unit", "nf_png", "alpha", "hue", "color_name", "gamma"],
}
HIDDEN_COLUMNS = ["Link", "rowid"]


# Every canned query is of one data set (and one model where it reads per-model rows): the same network
# ingested on two data sets keeps two runs, and layer names, units and labels repeat across them.
CANNED = {
    "selective_neurons": {
        "title": "Neurons of a layer above γ and α",
        "description": "The mission query: class- and colour-selective neurons of one layer of a model on a data set, "
                       "surely so: γ above gamma, its p-value against the class prior below gamma_p, the lower end "
                       "of α's 95 % interval above alpha_lo (docs/science.md §22). Leave a threshold empty to skip "
                       "it: a catalogue ingested without significance has no gamma_p or alpha_lo, so ask there with "
                       "gamma and alpha.",
        "sql": "SELECT model, dataset, layer, unit, nf_png, gamma, gamma_p, alpha, alpha_lo, hue, color_name "
               "FROM neurons WHERE model = :model AND dataset = :dataset AND layer = :layer "
               "AND gamma > CAST(:gamma AS REAL) "
               "AND (:gamma_p = '' OR gamma_p < CAST(:gamma_p AS REAL)) "
               "AND (:alpha_lo = '' OR alpha_lo > CAST(:alpha_lo AS REAL)) "
               "AND (:alpha = '' OR alpha > CAST(:alpha AS REAL)) ORDER BY gamma DESC, alpha DESC",
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
        "sql": "SELECT s.rank, s.model, s.dataset, s.layer, s.unit_b AS unit, n.nf_png, s.pearson, s.euclidean, "
               "n.alpha, n.gamma FROM similarity_pairs s JOIN neurons n ON n.model = s.model AND n.dataset = s.dataset "
               "AND n.layer = s.layer AND n.unit = s.unit_b "
               "WHERE s.model = :model AND s.dataset = :dataset AND s.layer = :layer "
               "AND s.unit_a = CAST(:unit AS INTEGER) ORDER BY s.rank",
    },
    "neurons_selective_to_class": {
        "title": "Neurons selective to a class of a data set",
        "sql": "SELECT c.model, c.dataset, c.layer, c.unit, n.nf_png, c.frequency, c.count, n.gamma "
               "FROM class_frequencies c JOIN neurons n ON n.model = c.model AND n.dataset = c.dataset "
               "AND n.layer = c.layer AND n.unit = c.unit "
               "WHERE c.dataset = :dataset AND c.label = :label ORDER BY c.frequency DESC LIMIT 200",
    },
}


def metadata(db_name: str) -> dict:
    """Datasette metadata: titles, table and column descriptions (schema.sql, the views' comments,
    COLUMN_NOTES), facets, canned queries, how tables are shown (DISPLAY), plugin settings."""
    described = column_descriptions()
    tables = {t: {"columns": cols, "facets": []} for t, cols in described.items()}
    for t, text in table_descriptions().items():
        tables[t]["description"] = text
    for t, facets in {"units": ["dataset", "layer", "color_name"], "layers": ["model", "dataset"],
                      "models": ["dataset"]}.items():
        tables[t]["facets"] = facets
    view_cols = view_column_descriptions(described)
    for view, text in view_descriptions().items():
        tables[view] = {"description": text, "columns": view_cols.get(view, {})}
    tables["neurons"]["facets"] = ["model", "dataset", "layer", "color_name", "faceted"]
    tables["color_selective_neurons"]["facets"] = ["model", "dataset", "layer", "color_name"]
    for t, cols in FULL_TEXT.items():
        tables[t]["fts_table"] = f"{t}_fts"
        tables[t]["searchmode"] = "raw"
    for t, order in DISPLAY.items():
        tables[t]["columns"].update({c: PICTURE_NOTES[c] for c in order if c in PICTURE_NOTES})
        tables[t]["plugins"] = {"neurocat": {"columns": order, "hidden": HIDDEN_COLUMNS}}
    return {
        "title": "neuron-catalog",
        "description": "Neurons of trained CNNs: top images, Neuron Features, colour and class selectivity, "
                       "multi-faceted measures. The catalogue's front page (/) lists its models and data sets; "
                       "a model's page is /-/model (model and dataset), a neuron's /-/neuron (model, dataset, "
                       "layer, unit).",
        "databases": {db_name: {"tables": tables, "queries": CANNED}},
        "plugins": {"datasette-render-images": {"size_limit": 4_000_000}},
    }


def write_metadata(path: Path, db_name: str) -> Path:
    path.write_text(json.dumps(metadata(db_name), indent=2, ensure_ascii=False))
    return path
