"""Which layout of schema.sql a catalogue file follows: stamped when created, checked on every open,
brought up to date by ``catalog.migrate`` (``neurocat migrate``)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import duckdb

# Bump when schema.sql gains a table or a column (or queries/ needs one that older files lack);
# migrate() adds them, so a bump needs no code unless a change is more than an addition.
SCHEMA_VERSION = 5  # 2: models.seed, probe_activations; 3: orientation_tuning, symmetry_axes; 4: label_selectivity.gamma_null_mean, gamma_p, gamma_excess
# 5: image_activations, unit_matches, layer_cka


class SchemaVersionError(ValueError):
    """A catalogue of another schema version than this code's; the message says what to do."""


def package_version() -> str | None:
    try:
        return version("neuron-catalog")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return None


def file_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The file's stamp; 0 for a catalogue made before stamps; None for a file holding no catalogue."""
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = 'main' AND table_type = 'BASE TABLE'").fetchall()}
    if "catalog_info" in tables:
        found = con.execute("SELECT max(schema_version) FROM catalog_info").fetchall()[0][0]
        if found is not None:
            return found
    return 0 if "models" in tables else None


def check(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Raise SchemaVersionError unless the file is new or of this version."""
    found = file_version(con)
    if found is None or found == SCHEMA_VERSION:
        return
    if found > SCHEMA_VERSION:
        raise _newer(path, found)
    what = ("was written by an older neuron-catalog (no schema version recorded)" if found == 0
            else f"has schema version {found}")
    raise SchemaVersionError(f"the catalogue {path} {what}; this neuron-catalog reads version {SCHEMA_VERSION}: "
                             f"run `neurocat migrate {path}` to bring it up to date, or re-ingest into a new file")


def _newer(path: Path, found: int) -> SchemaVersionError:
    return SchemaVersionError(f"the catalogue {path} has schema version {found}, newer than this neuron-catalog "
                              f"{package_version() or ''} reads ({SCHEMA_VERSION}): upgrade neuron-catalog "
                              f"(pip install -U neuron-catalog)")


def stamp(con: duckdb.DuckDBPyConnection, migrated_from: int | None = None) -> None:
    """Record this version in catalog_info (its only row)."""
    con.execute("DELETE FROM catalog_info")
    con.execute("INSERT INTO catalog_info (schema_version, written_by, migrated_from) VALUES (?, ?, ?)",
                [SCHEMA_VERSION, package_version(), migrated_from])


def upgrade(path: Path, tables: dict[str, str]) -> list[str]:
    """Add to the catalogue at ``path`` the ``tables`` (name -> CREATE statement) and columns it lacks,
    in one transaction, and stamp this version. Returns what changed; empty when it was up to date."""
    con = duckdb.connect(str(path))
    try:
        found = file_version(con)
        if found is None:
            raise SchemaVersionError(f"{path} holds no catalogue (no models table) to migrate")
        if found > SCHEMA_VERSION:
            raise _newer(path, found)
        if found == SCHEMA_VERSION:
            return []
        return _add_missing(con, tables, found) + [f"schema version {found} -> {SCHEMA_VERSION}"]
    finally:
        con.close()


def _add_missing(con: duckdb.DuckDBPyConnection, tables: dict[str, str], found: int) -> list[str]:
    wanted = duckdb.connect()  # this version's tables, empty, to read exact column types from
    for sql in tables.values():
        wanted.execute(sql)
    columns = "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? " \
              "AND table_catalog = current_database() AND table_schema = 'main' ORDER BY ordinal_position"
    changes = []
    con.execute("BEGIN TRANSACTION")
    try:
        for table, sql in tables.items():
            held = {r[0] for r in con.execute(columns, [table]).fetchall()}
            if not held:
                con.execute(sql)
                changes.append(f"added table {table}")
                continue
            for column, data_type in wanted.execute(columns, [table]).fetchall():
                if column not in held:
                    con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {data_type}')
                    changes.append(f"added column {table}.{column}")
        stamp(con, migrated_from=found)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        wanted.close()
    return changes
