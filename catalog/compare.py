"""Compare two models ingested on the same data set (`neurocat compare`), from the cross-model views."""
from __future__ import annotations

import pyarrow as pa

from .catalog import Catalog


def shared_dataset(cat: Catalog, model_a: str, model_b: str, dataset: str | None = None) -> str:
    rows = cat.con.execute("SELECT a.dataset FROM models a JOIN models b ON a.dataset = b.dataset "
                           "WHERE a.model = ? AND b.model = ? AND (? IS NULL OR a.dataset = ?) ORDER BY 1",
                           [model_a, model_b, dataset, dataset]).fetchall()
    if not rows:
        known = [f"{m} on {d}" for m, d in cat.con.execute("SELECT model, dataset FROM models ORDER BY 1, 2").fetchall()]
        raise ValueError(f"{model_a!r} and {model_b!r} share no data set{f' named {dataset!r}' if dataset else ''}; "
                         f"the catalogue holds: {', '.join(known) or 'nothing'}")
    if len(rows) > 1:
        raise ValueError(f"they share several data sets ({', '.join(r[0] for r in rows)}); choose one with --dataset")
    return rows[0][0]


def compare(cat: Catalog, model_a: str, model_b: str, dataset: str | None = None) -> dict[str, pa.Table]:
    """Three tables: both models' layers by relative depth; per layer of A, the mean best-match
    Jaccard against B and B's layer that matches most often; and the same from B to A."""
    ds = shared_dataset(cat, model_a, model_b, dataset)
    layers = cat.query(
        "SELECT model, layer, round(relative_depth, 2) AS depth, channels, rf_size, round(mean_alpha, 3) AS mean_alpha, "
        "round(mean_gamma, 3) AS mean_gamma, round(color_selective_fraction, 3) AS color_share, "
        "round(class_selective_fraction, 3) AS class_share FROM layer_comparison "
        "WHERE dataset = ? AND model IN (?, ?) ORDER BY relative_depth, model", [ds, model_a, model_b])
    out = {"layers": layers}
    for a, b in ((model_a, model_b), (model_b, model_a)):
        out[f"{a} -> {b}"] = cat.query(
            """WITH m AS (SELECT * FROM best_match WHERE dataset = ? AND model_a = ? AND model_b = ?),
                    votes AS (SELECT layer_a, layer_b, COUNT(*) AS n,
                              ROW_NUMBER() OVER (PARTITION BY layer_a ORDER BY COUNT(*) DESC, layer_b) AS position
                              FROM m GROUP BY layer_a, layer_b)
               SELECT l.layer AS layer, COUNT(m.unit_a) AS matched, l.channels - l.n_dead AS live,
                      round(AVG(m.jaccard), 3) AS mean_jaccard, round(MAX(m.jaccard), 3) AS best_jaccard,
                      v.layer_b AS most_matched_layer
               FROM layers l LEFT JOIN m ON m.layer_a = l.layer
               LEFT JOIN votes v ON v.layer_a = l.layer AND v.position = 1
               WHERE l.model = ? AND l.dataset = ?
               GROUP BY l.layer, l.layer_index, l.channels, l.n_dead, v.layer_b ORDER BY l.layer_index""",
            [ds, a, b, a, ds])
    return out
