"""The DuckDB catalogue of neurons: create, load runs, apply the views of queries/, query."""
from .catalog import Catalog, open, view_files  # noqa: A004 - `catalog.open(path)` is the public API

__all__ = ["Catalog", "open", "view_files"]
