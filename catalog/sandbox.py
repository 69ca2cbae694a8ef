"""User SQL in a sandbox: a read-only DuckDB connection that reads the catalogue and nothing else."""
from __future__ import annotations

from pathlib import Path

import duckdb

# DuckDB settings for user SQL: no files but the catalogue itself (no COPY TO, ATTACH, read_csv, glob, ...),
# no network, no extensions, and locked so that SQL cannot SET them back.
SANDBOX = {"enable_external_access": False, "autoload_known_extensions": False,
           "autoinstall_known_extensions": False, "allow_community_extensions": False,
           "lock_configuration": True}
SANDBOX_NOTE = "user SQL is sandboxed: it reads the catalogue and nothing else, no files, network or extensions"


def quote(name: str) -> str:
    """An SQL identifier, quoted (DuckDB and SQLite alike): user tables may be called `my notes` or `a"b`."""
    return '"' + name.replace('"', '""') + '"'


def connect_sandboxed(path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the catalogue at ``path`` (an empty in-memory database without one)
    in which user SQL can read the catalogue and nothing else. In one process, a file is open either
    sandboxed or not: DuckDB refuses a second configuration of an open file."""
    if path is None:
        return duckdb.connect(":memory:", config=SANDBOX)
    return duckdb.connect(str(path), read_only=True, config=SANDBOX)
