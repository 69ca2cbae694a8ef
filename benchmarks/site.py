"""Publish and page times on a synthetic catalogue of a million neurons and ten million top-image rows.

    python benchmarks/site.py --neurons 1000000 --top 10

Builds the DuckDB catalogue with SQL (synthetic values of the real schema), publishes it, serves it
with Datasette on a free loopback port, and times a filtered `neurons` table page and a neuron page
(median of 7 warm requests; the contact sheet is left out: it reads image files).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb
import pyarrow as pa

import catalog
from catalog.catalog import schema_tables
from catalog.site import prepare, running

LAYERS = 100


def build(path: Path, neurons: int, top: int) -> None:
    """Synthetic rows made by SQL in an in-memory DuckDB holding the same schema, loaded through the
    catalogue's own write path (``load_run``, then ``replace`` one layer at a time to bound memory)."""
    per_layer = neurons // LAYERS
    mem = duckdb.connect()
    for sql in schema_tables().values():
        mem.execute(sql)

    def rows(table: str, select: str, params: list | None = None) -> pa.Table:
        mem.execute(f"DELETE FROM {table}")
        mem.execute(f"INSERT INTO {table} {select}", params or [])
        return mem.sql(f"SELECT * FROM {table}").to_arrow_table()

    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cf"
                        "c0000003010100c9fe92ef0000000049454e44ae426082")
    with catalog.open(path) as cat:
        cat.load_run({
            "datasets": rows("datasets", "VALUES ('synthetic', '/nonexistent', 100000, 1000, 'x', 0.5, 0.5, 0.5)"),
            "images": rows("images", "SELECT 'synthetic', i, 'img/' || i || '.jpg', 'class' || (i % 1000) "
                                     "FROM range(100000) t(i)"),
            "models": rows("models", "(model, dataset, architecture, source, image_size, top_n, color_threshold, "
                                     "n_images, n_neurons) VALUES ('synth', 'synthetic', 'none', 'callable', 224, ?, "
                                     "0.25, 100000, ?)", [top, neurons]),
            "layers": rows("layers", f"(model, dataset, layer, layer_index, channels, rf_size, rf_stride, n_dead) "
                                     f"SELECT 'synth', 'synthetic', 'conv' || l, l, {per_layer}, 3 + 4 * l, 2, 0 "
                                     f"FROM range({LAYERS}) t(l)"),
        }, "synth", "synthetic")
        names = ", ".join(f"('{ix}')" for ix in ("alpha", "gamma", "curve_area", "sparsity", "flatness", "mf_degree",
                                                 "mf_zscore", "mf_pvalue"))
        for layer in range(LAYERS):
            first, name = layer * per_layer, f"conv{layer}"
            span = f"FROM range({first}, {first + per_layer}) t(n)"
            cat.replace({
                "units": rows("units", f"(model, dataset, layer, unit, a_max, n_top, dead, nf_png, nf_n_used, hue, "
                                       f"color_name, alpha_method, gamma_m) SELECT 'synth', 'synthetic', '{name}', "
                                       f"n % {per_layer}, 1 + random(), {top}, false, ?, 7, random() * 360, "
                                       f"CASE WHEN n % 7 = 0 THEN 'red' END, 'centred', 1 + n % 5 {span}", [png]),
                "neuron_indexes": rows("neuron_indexes", f"SELECT 'synth', 'synthetic', '{name}', n % {per_layer}, "
                                                         f"ix, random() {span}, (VALUES {names}) s(ix)"),
                "top_images": rows("top_images", f"SELECT 'synth', 'synthetic', '{name}', n % {per_layer}, r, "
                                                 f"(n * 7919 + r * 104729) % 100000, 10 - r, (10 - r) / 10.0, 3, 4, "
                                                 f"0, 0, 16, r < 7 {span}, range({top}) s(r)"),
                "class_frequencies": rows("class_frequencies", f"SELECT 'synth', 'synthetic', '{name}', "
                                          f"n % {per_layer}, 'class' || ((n + k) % 1000), 3, 1 / 3 {span}, range(3) s(k)"),
            }, "synth", "synthetic", layer=name)


def timed_get(url: str, repeats: int = 7) -> float:
    urllib.request.urlopen(url, timeout=120).read()  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as r:
            r.read()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--neurons", type=int, default=1_000_000)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--port", type=int, default=8799)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="neurocat-site-"))
    start = time.perf_counter()
    build(tmp / "synth.duckdb", args.neurons, args.top)
    print(f"built {args.neurons:,} neurons, {args.neurons * args.top:,} top-image rows in "
          f"{time.perf_counter() - start:.0f} s ({(tmp / 'synth.duckdb').stat().st_size / 1e6:.0f} MB DuckDB)")
    start = time.perf_counter()
    db, metadata, _ = prepare(tmp / "synth.duckdb", force=True)
    print(f"publish: {time.perf_counter() - start:.0f} s, {db.stat().st_size / 1e6:.0f} MB SQLite")
    with running(db, metadata, port=args.port, timeout=600) as base:
        pages = {
            "filtered table page (neurons, layer = conv42, gamma > 0.9, alpha > 0.5)":
                f"/{db.stem}/neurons?layer=conv42&gamma__gt=0.9&alpha__gt=0.5",
            "same, JSON": f"/{db.stem}/neurons.json?layer=conv42&gamma__gt=0.9&alpha__gt=0.5",
            "mission query over all layers (SQL, JSON)":
                f"/{db.stem}.json?sql=" + urllib.request.quote(
                    "SELECT model, layer, unit FROM neurons WHERE gamma > 0.9 AND alpha > 0.5 LIMIT 100"),
            "neuron page": "/-/neuron?model=synth&dataset=synthetic&layer=conv42&unit=17",
            "top images of a neuron (canned query)":
                f"/{db.stem}/top_images_of_neuron?model=synth&dataset=synthetic&layer=conv42&unit=17",
        }
        for label, path in pages.items():
            print(f"{label:75s} {timed_get(base + path):8.1f} ms")


if __name__ == "__main__":
    main()
