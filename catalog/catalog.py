"""One DuckDB file holds every model's neurons; views come from ``queries/*.sql``."""
from __future__ import annotations

import functools
import re
from importlib.resources import files
from pathlib import Path

import duckdb
import pyarrow as pa

from .reading import Reading
from .sandbox import SANDBOX_NOTE, connect_sandboxed, quote  # noqa: F401 - part of this module's API
from .schema_version import check as check_schema_version, stamp, upgrade

# Package data (catalog/sql links to the top-level files), so an installed wheel finds them too.
SCHEMA = files("catalog.sql") / "schema.sql"
QUERIES = files("catalog.sql") / "queries"

# Rows of these tables belong to one (model, dataset) run and are replaced together.
RUN_TABLES = ("models", "layers", "units", "neuron_indexes", "top_images", "class_frequencies", "ingest_errors",
              "similarity_pairs", "layer_similarity", "class_vectors", "class_distances", "category_tree",
              "category_mst", "filter_tree_nodes", "filter_tree_edges", "ica_components", "visualizations",
              "label_selectivity", "label_frequencies", "ablation", "probe_activations", "orientation_tuning", "symmetry_axes",
              "image_activations")
# Rows of two models compared (`neurocat compare --activations`): they go when either model's run is replaced.
COMPARISON_TABLES = ("unit_matches", "layer_cka")
DATASET_TABLES = ("datasets", "images", "image_labels", "label_hierarchy")

# Only the catalogue's own schema: a user's `CREATE SCHEMA extra; CREATE TABLE extra.units` is not ours.
OWN_SCHEMA = "table_catalog = current_database() AND table_schema = 'main'"


def view_files(more_indexes: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """View name -> SELECT text, one view per file in queries/.

    ``more_indexes`` (say, plugin indexes) become columns of ``neurons`` beside the ones its file names.
    """
    views = {p.name[:-4]: p.read_text() for p in sorted(QUERIES.iterdir(), key=lambda p: p.name)
             if p.name.endswith(".sql")}
    extra = [n for n in more_indexes if n not in builtin_indexes()]
    for name in extra:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"index name {name!r} must be lower-case letters, digits and _")
    views["neurons"] = views["neurons"].replace(
        "-- @more-indexes: columns", "".join(f"ix.{n}, " for n in extra)).replace(
        "-- @more-indexes: pivot", "".join(f""", MAX(CASE WHEN "index" = '{n}' THEN value END) AS {n}""" for n in extra))
    return views


def builtin_indexes() -> list[str]:
    """The indexes that queries/neurons.sql names itself."""
    return re.findall(r"\"index\" = '(\w+)'", (QUERIES / "neurons.sql").read_text())


def schema_tables() -> dict[str, str]:
    """Table name -> CREATE statement, in schema.sql order."""
    text = re.sub(r"--[^\n]*", "", SCHEMA.read_text())  # comments may hold ';'
    statements = [s.strip() for s in text.split(";") if "CREATE TABLE" in s]
    out = {}
    for s in statements:
        s = s[s.index("CREATE TABLE"):]
        name = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s).group(1)
        out[name] = s
    return out


def create_views(execute, replace_prefix: str = "CREATE OR REPLACE VIEW", materialise: tuple[str, ...] = (),
                 more_indexes: list[str] | tuple[str, ...] = ()) -> None:
    """Create every view of queries/, in dependency order (a view may use another).

    Views named in ``materialise`` become tables built from the same SQL (for a read-only copy).
    """
    pending = view_files(more_indexes)
    while pending:
        failed = {}
        for name, sql in pending.items():
            try:
                prefix = "CREATE TABLE" if name in materialise else replace_prefix
                execute(f"{prefix} {name} AS\n{sql.strip().rstrip(';')}")
            except Exception as exc:  # noqa: BLE001 - the dialect's "missing relation" error types differ
                failed[name] = exc
        if len(failed) == len(pending):
            name, exc = next(iter(failed.items()))
            raise RuntimeError(f"view {name} (queries/{name}.sql) does not compile: {exc}") from exc
        pending = {n: pending[n] for n in failed}


@functools.lru_cache(maxsize=8)
def expected_views(more_indexes: tuple[str, ...] = ()) -> dict[str, str]:
    """View name -> the SQL DuckDB stores for it, from an empty in-memory copy of schema.sql."""
    con = duckdb.connect(":memory:")
    try:
        for sql in schema_tables().values():
            con.execute(sql)
        create_views(con.execute, more_indexes=more_indexes)
        return dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
    finally:
        con.close()


class Catalog(Reading):
    """A catalogue file. ``with catalog.open(path) as cat: cat.query("SELECT ...")``.

    Opened read-only it is sandboxed unless ``sandbox=False``: SQL run on it reads the catalogue and
    nothing else (see ``sandbox.SANDBOX``), so user SQL (`neurocat query`) can run on it as it is.
    """

    def __init__(self, path: str | Path, read_only: bool = False, sandbox: bool | None = None):
        self.path = Path(path)
        self.sandboxed = read_only if sandbox is None else sandbox
        if self.sandboxed and not read_only:
            raise ValueError("a sandboxed catalogue is read-only: open it with read_only=True")
        if read_only and not self.path.exists():
            raise FileNotFoundError(f"no catalogue at {self.path}")
        self.con = (connect_sandboxed(self.path) if self.sandboxed
                    else duckdb.connect(str(self.path), read_only=read_only))
        try:
            check_schema_version(self.con, self.path)  # an older or newer file: a clear error, nothing written
        except BaseException:
            self.con.close()
            raise
        if not read_only:
            self.create()

    def create(self) -> None:
        """Tables of schema.sql, the schema version, the index bins and the views; safe to repeat."""
        self.con.execute("BEGIN TRANSACTION")  # a file with tables but no stamp would read as an old one
        for sql in schema_tables().values():
            self.con.execute(sql)
        if self.con.execute("SELECT count(*) FROM catalog_info").fetchall() == [(0,)]:
            stamp(self.con)
        self.con.execute("COMMIT")
        if self.con.execute("SELECT count(*) FROM index_bins").fetchone()[0] == 0:
            self.con.executemany("INSERT INTO index_bins VALUES (?, ?, ?)",
                                 [(b, b / 10, (b + 1) / 10 if b < 9 else 1.0 + 1e-9) for b in range(10)])
        self._views = None
        self.refresh_views()

    def index_names(self) -> list[str]:
        return [r[0] for r in self.con.execute('SELECT DISTINCT "index" FROM neuron_indexes ORDER BY 1').fetchall()]

    def refresh_views(self) -> None:
        """(Re)create the views when the set of index names changed: a new index becomes a column of ``neurons``."""
        names = self.index_names()
        if names == self._views:
            return
        # Views already as this code would write them are left alone: opening for writing then leaves
        # the file (and its mtime, which `serve` compares) untouched.
        if self._views is not None or self._held_views() != expected_views(tuple(names)):
            create_views(self.con.execute, more_indexes=names)
        self._views = names

    def _held_views(self) -> dict[str, str]:
        return dict(self.con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal "
                                     "AND database_name = current_database() AND schema_name = 'main'").fetchall())

    def load_run(self, tables: dict[str, Path | pa.Table], model: str, dataset: str) -> None:
        """Replace one (model, dataset) run with the given Parquet files (or Arrow tables), in one transaction.

        Every run table loses its rows for (``model``, ``dataset``), analyses included; data set
        tables given are replaced for ``dataset``. Either every row lands or none does.
        """
        if "label_hierarchy" in tables and self._same_classes(tables["label_hierarchy"], dataset):
            # A hierarchy given with `neurocat analyze label-hierarchy` outlives re-ingests of the same classes.
            tables = {t: v for t, v in tables.items() if t != "label_hierarchy"}
        self._write(tables, model, dataset, RUN_TABLES)

    def _same_classes(self, incoming, dataset: str) -> bool:
        held = {r[0] for r in self.con.execute("SELECT DISTINCT label FROM label_hierarchy WHERE dataset = ?",
                                               [dataset]).fetchall()}
        return bool(held) and held == set(_column_values(incoming, "label"))

    def replace(self, tables: dict[str, Path | pa.Table], model: str, dataset: str, **key) -> None:
        """Replace only the given tables' rows for (``model``, ``dataset``[, ``key``]), in one transaction.

        ``key`` narrows further (``label="horse"`` keeps other classes' rows; a list value means any
        of them: ``unit=[0, 3]``). In ``neuron_indexes``
        only the indexes present in the incoming rows are replaced.
        """
        self._write(tables, model, dataset, (), key)

    def _write(self, tables, model, dataset, clear, key=None) -> None:
        key = key or {}
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            for table in DATASET_TABLES:
                if table in tables:
                    con.execute(f"DELETE FROM {quote(table)} WHERE dataset = ?", [dataset])
            for table in set(clear) | (set(tables) - set(DATASET_TABLES)):
                where, params = "model = ? AND dataset = ?", [model, dataset]
                for column, value in key.items():
                    values = list(value) if isinstance(value, (list, tuple)) else [value]
                    where += f' AND {quote(column)} IN ({", ".join("?" * len(values)) or "NULL"})'
                    params += values
                if table == "neuron_indexes" and table not in clear:
                    names = _column_values(tables[table], "index")
                    where += f""" AND "index" IN ({', '.join('?' * len(names)) or 'NULL'})"""
                    params += names
                con.execute(f"DELETE FROM {quote(table)} WHERE {where}", params)
            if clear:  # a run replaced: its comparisons with other models no longer hold
                for table in COMPARISON_TABLES:
                    con.execute(f"DELETE FROM {table} WHERE dataset = ? AND (model_a = ? OR model_b = ?)",
                                [dataset, model, model])
            for table, source in tables.items():
                # A column a user added to one of these tables stays, NULL in the new rows.
                held, own = self._columns(table), schema_columns().get(table, ())
                given = set(_column_names(source)) if set(held) - set(own) else set()
                columns = ", ".join(quote(c) for c in held if c in own or c in given)
                if isinstance(source, pa.Table):
                    con.register("_incoming", source)
                    con.execute(f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} FROM _incoming")
                    con.unregister("_incoming")
                else:
                    con.execute(f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} FROM read_parquet(?)",
                                [str(source)])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if "neuron_indexes" in tables or "neuron_indexes" in clear:
            self.refresh_views()

    def _columns(self, table: str) -> list[str]:
        return [r[0] for r in self.con.execute(
            f"SELECT column_name FROM information_schema.columns WHERE table_name = ? AND {OWN_SCHEMA} "
            "ORDER BY ordinal_position", [table]).fetchall()]

    def dataset_fingerprint(self, dataset: str) -> str | None:
        row = self.con.execute("SELECT fingerprint FROM datasets WHERE dataset = ?", [dataset]).fetchone()
        return row[0] if row else None

    def models_on(self, dataset: str) -> list[str]:
        return [r[0] for r in self.con.execute(
            "SELECT model FROM models WHERE dataset = ? ORDER BY model", [dataset]).fetchall()]

    def query(self, sql: str, params: list | dict | None = None) -> pa.Table:
        """Run SQL, return an Arrow table (empty for a statement without rows)."""
        try:
            result = self.con.sql(sql) if params is None else self.con.sql(sql, params=params)
        except (duckdb.PermissionException, duckdb.InvalidInputException) as exc:
            if self.sandboxed and ("disabled" in str(exc) or "locked" in str(exc)):
                raise type(exc)(f"{exc}; {SANDBOX_NOTE}") from None
            raise
        return pa.table({}) if result is None else result.to_arrow_table()

    def df(self, sql: str, params: list | dict | None = None):
        """Run SQL, return a pandas DataFrame."""
        return self.query(sql, params).to_pandas()

    def tables(self) -> list[str]:
        return [r[0] for r in self.con.execute(
            f"SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND {OWN_SCHEMA} "
            "ORDER BY 1").fetchall()]

    def views(self) -> list[str]:
        return [r[0] for r in self.con.execute(
            f"SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW' AND {OWN_SCHEMA} "
            "ORDER BY 1").fetchall()]

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.lru_cache(maxsize=1)
def schema_columns() -> dict[str, tuple[str, ...]]:
    """Table -> its columns in schema.sql."""
    con = duckdb.connect(":memory:")
    try:
        for sql in schema_tables().values():
            con.execute(sql)
        out: dict[str, list[str]] = {}
        for table, column in con.execute("SELECT table_name, column_name FROM information_schema.columns "
                                         "ORDER BY table_name, ordinal_position").fetchall():
            out.setdefault(table, []).append(column)
        return {t: tuple(c) for t, c in out.items()}
    finally:
        con.close()


def _column_names(source) -> list[str]:
    import pyarrow.parquet as pq

    return source.column_names if isinstance(source, pa.Table) else pq.read_schema(source).names


def _column_values(source, column: str) -> list[str]:
    import pyarrow.parquet as pq

    table = source if isinstance(source, pa.Table) else pq.read_table(source, columns=[column])
    return sorted({str(v) for v in table.column(column).to_pylist() if v is not None})


def migrate(path: str | Path) -> list[str]:
    """Bring a catalogue of an older schema version up to this one, in place: tables and columns it
    lacks are added (NULL in its rows), the version stamped, then the views re-created from this
    version's queries/. Returns what changed; empty when it was up to date."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no catalogue at {path}")
    changes = upgrade(path, schema_tables())
    if not changes:
        return []
    Catalog(path).close()  # views of this version's queries/ (and the index bins)
    return changes + ["views re-created"]


def open(path: str | Path, read_only: bool = False, sandbox: bool | None = None) -> Catalog:  # noqa: A001
    """Open (creating if needed) a catalogue file; read-only opens are sandboxed (see ``Catalog``)."""
    return Catalog(path, read_only=read_only, sandbox=sandbox)


