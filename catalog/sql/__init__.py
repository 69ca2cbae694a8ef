"""schema.sql and queries/*.sql as package data, read with ``importlib.resources.files("catalog.sql")``.

They live at the repository's top level; the two entries here are relative symlinks to them, so an
editable install reads the files themselves and a wheel gets copies (setuptools follows the links).
"""
