"""The DuckDB catalogue of neurons: create, load runs, apply the views of queries/, query."""
from .catalog import Catalog, migrate, open, view_files  # noqa: A004 - `catalog.open(path)` is the public API
from .schema_version import SCHEMA_VERSION, SchemaVersionError

__all__ = ["Catalog", "open", "view_files", "migrate", "SCHEMA_VERSION", "SchemaVersionError"]
