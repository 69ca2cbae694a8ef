"""Indexing pipeline and the `neurocat` command line."""
__version__ = "0.1.0"
