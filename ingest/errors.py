"""Errors a user can fix: the CLI prints them and exits with code 2."""


class UsageError(Exception):
    """Bad input (unknown layer, weights that do not fit, empty data set, ...)."""
