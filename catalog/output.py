"""Rows printed for people and programs: an aligned table, CSV or JSON (`neurocat query`, `compare`, the demo)."""
from __future__ import annotations

import base64
import csv
import json
from enum import Enum


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def plain(v):
    """A value JSON and CSV can hold: bytes (PNG columns) become base64."""
    return base64.b64encode(v).decode() if isinstance(v, bytes) else v


def cell(v) -> str:
    """A value as a table cell: short floats, sizes for blobs, NULL for None."""
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_rows(table, fmt: Format, out) -> None:
    """Print an Arrow table to the text stream ``out``."""
    rows = table.to_pylist()
    names = table.column_names
    if fmt is Format.json:
        json.dump([{k: plain(v) for k, v in r.items()} for r in rows], out, indent=2, default=str)
        out.write("\n")
    elif fmt is Format.csv:
        w = csv.writer(out)
        w.writerow(names)
        w.writerows([[plain(r[n]) for n in names] for r in rows])
    else:
        cells = [[cell(r[n]) for n in names] for r in rows]
        widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(names)]
        out.write("  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip() + "\n")
        out.write("  ".join("-" * w for w in widths) + "\n")
        for c in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip() + "\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
