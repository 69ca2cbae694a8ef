"""The catalogue's read API, a mixin of ``Catalog``: runs, layers, neurons, top images, images.

Every per-model read is keyed by (model, dataset): one network indexed on two data sets keeps two
runs, and nothing here mixes them. Tables come back as Arrow, names and numbers as small lists.
No torch and no ``ingest`` here: the Datasette site and notebooks use this without them.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import duckdb
import pyarrow as pa

from .sandbox import SANDBOX_NOTE, connect_sandboxed, quote


class CatalogLookupError(ValueError):
    """A model, data set, layer or unit the catalogue does not hold, or an ambiguous (model, dataset)."""


def condition(where: str) -> str:
    """A user's SQL condition, parenthesised; one condition only: a ';' would start another statement."""
    tokens = duckdb.tokenize(where)
    for (start, kind), end in zip(tokens, [p for p, _ in tokens[1:]] + [len(where)]):
        if kind == duckdb.token_type.operator and ";" in where[start:end]:
            raise CatalogLookupError(f"--where {where!r} is refused: it takes one SQL condition, and ';' "
                                     "would start another statement")
    return f"(\n{where}\n)"  # on lines of its own, so a trailing -- comment ends inside


def one_line(exc: Exception) -> str:
    """DuckDB's message without the caret lines that point into SQL the user did not write."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    return " ".join(ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"})


def _in(column: str, values: Iterable) -> tuple[str, list]:
    """``column IN (?, ...)`` and its parameters; an empty list matches nothing."""
    values = list(values)
    return f"{column} IN ({', '.join('?' * len(values)) or 'NULL'})", values


class Reading:
    """Read methods over ``self.con`` (DuckDB) and ``self.query``; see ``Catalog``."""

    def rows(self, sql: str, params: Sequence | dict | None = None) -> list[tuple]:
        """Run SQL, return its rows as tuples."""
        return self.con.execute(sql, params or []).fetchall()

    # -- runs and data sets --------------------------------------------------------------------------

    def runs(self, model: str | None = None, dataset: str | None = None) -> pa.Table:
        """The ``models`` rows (one per ingested (model, dataset)), optionally of one model or data set."""
        return self.query("SELECT * FROM models WHERE (? IS NULL OR model = ?) AND (? IS NULL OR dataset = ?) "
                          "ORDER BY model, dataset", [model, model, dataset, dataset])

    def run(self, model: str, dataset: str | None = None) -> dict:
        """The ``models`` row of (model, dataset); ``dataset`` may be omitted when the model has only one."""
        rows = self.runs(model, dataset).to_pylist()
        if not rows:
            known = [f"{m} on {d}" for m, d in self.rows("SELECT model, dataset FROM models ORDER BY 1, 2")]
            raise CatalogLookupError(
                f"no ingest of model {model!r}{f' on {dataset!r}' if dataset else ''} in {self.path}; "
                f"the catalogue holds: {', '.join(known) or 'nothing yet'}")
        if len(rows) > 1:
            raise CatalogLookupError(f"model {model!r} was ingested on several data sets "
                                     f"({', '.join(r['dataset'] for r in rows)}); choose one with --dataset")
        return rows[0]

    def datasets(self) -> pa.Table:
        """The ``datasets`` rows."""
        return self.query("SELECT * FROM datasets ORDER BY dataset")

    def dataset_info(self, dataset: str) -> dict:
        """The ``datasets`` row of ``dataset`` (root, n_images, mean colour, ...)."""
        rows = self.query("SELECT * FROM datasets WHERE dataset = ?", [dataset]).to_pylist()
        if not rows:
            known = [r[0] for r in self.rows("SELECT dataset FROM datasets ORDER BY 1")]
            raise CatalogLookupError(f"no data set {dataset!r} in the catalogue; "
                                     f"it holds: {', '.join(known) or 'none'}")
        return rows[0]

    def images(self, dataset: str, label: str | None = None, ids: Iterable[int] | None = None) -> pa.Table:
        """(image_id, path, label) of a data set's images, by image id; optionally one class or some ids."""
        where, params = "dataset = ? AND (? IS NULL OR label = ?)", [dataset, label, label]
        if ids is not None:
            cond, values = _in("image_id", ids)
            where, params = f"{where} AND {cond}", params + values
        return self.query(f"SELECT image_id, path, label FROM images WHERE {where} ORDER BY image_id", params)

    def classes(self, dataset: str) -> list[str]:
        """The data set's distinct primary labels, sorted."""
        return [r[0] for r in self.rows("SELECT DISTINCT label FROM images WHERE dataset = ? ORDER BY 1", [dataset])]

    # -- layers and neurons of one run ---------------------------------------------------------------

    def layers(self, model: str, dataset: str) -> pa.Table:
        """The run's ``layers`` rows in model order."""
        return self.query("SELECT * FROM layers WHERE model = ? AND dataset = ? ORDER BY layer_index", [model, dataset])

    def layer_names(self, model: str, dataset: str) -> list[str]:
        """The run's ingested layers in model order."""
        return [r[0] for r in self.rows("SELECT layer FROM layers WHERE model = ? AND dataset = ? ORDER BY layer_index",
                                        [model, dataset])]

    def neurons(self, model: str, dataset: str, layer: str | None = None, units: Iterable[int] | None = None,
                where: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows of the ``neurons`` view of one run (layers in model order, then unit).

        ``where`` is an SQL condition on the view's columns, run sandboxed (see ``_matching``);
        ``columns`` picks columns (default all).
        """

        sql_where, params = "model = ? AND dataset = ? AND (? IS NULL OR layer = ?)", [model, dataset, layer, layer]
        if units is not None:
            cond, values = _in("unit", units)
            sql_where, params = f"{sql_where} AND {cond}", params + values
        keys = ["model", "dataset", "layer", "unit"]
        fetched = list(dict.fromkeys([*columns, *keys])) if columns and where else columns
        picked = ", ".join(f"n.{quote(c)}" for c in fetched) if fetched else "n.*"
        rows = self.query(f"SELECT {picked} FROM (SELECT * FROM neurons WHERE {sql_where}) AS n "
                          "JOIN layers AS l ON l.model = n.model AND l.dataset = n.dataset AND l.layer = n.layer "
                          "ORDER BY l.layer_index, n.unit", params)
        if not where:
            return rows
        chosen = self._matching(where, sql_where, params)
        keep = [k in chosen for k in zip(*(rows.column(c).to_pylist() for c in keys))]
        rows = rows.filter(pa.array(keep, pa.bool_()))
        return rows.select(list(columns)) if columns else rows

    def _matching(self, where: str, sql_where: str, params: list) -> set[tuple]:
        """(model, dataset, layer, unit) of the rows of ``neurons`` matching ``sql_where`` and the user's
        ``where``. A sandboxed catalogue runs it itself; one open for writing copies those rows into an
        in-memory sandbox (no files, no extensions, locked), where ``neurons`` is the only table. The
        caller keeps only keys of its own rows, so SQL that breaks out of the parentheses adds nothing."""

        text = condition(where)
        try:
            if getattr(self, "sandboxed", False):
                found = self.rows(f"SELECT model, dataset, layer, unit FROM (SELECT * FROM neurons WHERE {sql_where}) "
                                  f"AS neurons WHERE {text}", params)
            else:
                rows = self.query(f"SELECT * FROM neurons WHERE {sql_where}", params)
                sandbox = connect_sandboxed()
                try:
                    sandbox.register("neurons", rows)
                    found = sandbox.execute(f"SELECT model, dataset, layer, unit FROM neurons WHERE {text}").fetchall()
                finally:
                    sandbox.close()
        except (duckdb.PermissionException, duckdb.InvalidInputException) as exc:
            if "disabled" not in str(exc) and "locked" not in str(exc):
                raise CatalogLookupError(f"--where {where!r} is not a valid condition on the neurons view: "
                                         f"{one_line(exc)}") from None
            raise CatalogLookupError(f"--where {where!r} is refused: {one_line(exc)}; {SANDBOX_NOTE}") from None
        except duckdb.Error as exc:
            raise CatalogLookupError(f"--where {where!r} is not a valid condition on the neurons view: "
                                     f"{one_line(exc)}") from None
        return set(found)

    def select_units(self, model: str, dataset: str, layer: str, units: Iterable[int] | None = None,
                     where: str | None = None) -> list[int]:
        """The units named (checked against the layer's width), or those of ``layer`` matching ``where``."""
        channels = self.rows("SELECT channels FROM layers WHERE model = ? AND dataset = ? AND layer = ?",
                             [model, dataset, layer])
        if not channels:
            raise CatalogLookupError(f"layer {layer!r} of {model!r} is not in the catalogue; ingested layers: "
                                     f"{', '.join(self.layer_names(model, dataset))}")
        units = None if units is None else list(units)
        if where:  # sandboxed; a bad condition is a CatalogLookupError (see neurons)
            chosen = self.neurons(model, dataset, layer, where=where, columns=["unit"]).column(0).to_pylist()
            return [u for u in chosen if units is None or u in units]
        n = channels[0][0]
        chosen = list(range(n)) if units is None else units
        bad = [u for u in chosen if not 0 <= u < n]
        if bad:
            raise CatalogLookupError(f"layer {layer} has units 0-{n - 1}; not {bad[:5]}")
        return chosen

    def top_images(self, model: str, dataset: str, layer: str | None = None, units: Iterable[int] | None = None,
                   top: int | None = None, live: bool = False) -> pa.Table:
        """Top images of one run's neurons with the image's path and label, by layer, unit, rank.

        ``top`` keeps ranks below it; ``live`` leaves out dead neurons.
        """
        where = ("t.model = ? AND t.dataset = ? AND (? IS NULL OR t.layer = ?) AND (? IS NULL OR t.rank < ?)"
                 + (" AND NOT u.dead" if live else ""))
        params = [model, dataset, layer, layer, top, top]
        if units is not None:
            cond, values = _in("t.unit", units)
            where, params = f"{where} AND {cond}", params + values
        return self.query(
            "SELECT t.layer, t.unit, t.rank, t.image_id, i.path, i.label, t.activation, t.rel_activation, t.y, t.x, "
            "t.crop_top, t.crop_left, t.crop_size, t.in_nf FROM top_images AS t "
            "JOIN images AS i ON i.dataset = t.dataset AND i.image_id = t.image_id "
            "JOIN units AS u ON u.model = t.model AND u.dataset = t.dataset AND u.layer = t.layer AND u.unit = t.unit "
            "JOIN layers AS l ON l.model = t.model AND l.dataset = t.dataset AND l.layer = t.layer "
            f"WHERE {where} ORDER BY l.layer_index, t.unit, t.rank", params)

    def class_frequencies(self, model: str, dataset: str, layer: str | None = None,
                          units: Iterable[int] | None = None) -> pa.Table:
        """(layer, unit, label, count, frequency) of one run: the f_c of γ."""
        where, params = "model = ? AND dataset = ? AND (? IS NULL OR layer = ?)", [model, dataset, layer, layer]
        if units is not None:
            cond, values = _in("unit", units)
            where, params = f"{where} AND {cond}", params + values
        return self.query(f"SELECT layer, unit, label, count, frequency FROM class_frequencies WHERE {where} "
                          "ORDER BY layer, unit, frequency DESC, label", params)

    def class_vectors(self, model: str, dataset: str) -> pa.Table:
        """(layer, label, n_images, vector) of one run, by label; vectors are float32 little-endian blobs."""
        return self.query("SELECT layer, label, n_images, vector FROM class_vectors WHERE model = ? AND dataset = ? "
                          "ORDER BY label", [model, dataset])

    def figure(self, name: str, model: str, dataset: str | None = None) -> bytes:
        """PNG of one of ``catalog.plots.FIGURES`` for (model, dataset); ``dataset`` as in ``run``."""
        from . import plots

        dataset = self.run(model, dataset)["dataset"]
        return plots.figure(name, self.rows, model, dataset)
