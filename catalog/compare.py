"""Compare two models ingested on the same data set (`neurocat compare`): by their top images, from the
cross-model views, and by their activations on the same images (unit correlation, layer CKA; docs/science.md §23)."""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
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
    for a, b in ((model_a, model_b), (model_b, model_a)):
        by_activation = cat.query(
            """WITH best AS (SELECT layer_a, AVG(correlation) AS mean_r, COUNT(*) AS matched FROM unit_matches
                             WHERE dataset = ? AND model_a = ? AND model_b = ? AND kind = 'best' GROUP BY layer_a),
                    pairs AS (SELECT layer_a, layer_b, AVG(correlation) AS mean_r,
                              SUM(CASE WHEN correlation > ? THEN 1 ELSE 0 END) AS above FROM unit_matches
                              WHERE dataset = ? AND model_a = ? AND model_b = ? AND kind = 'one_to_one'
                              GROUP BY layer_a, layer_b),
                    cka AS (SELECT layer_a, layer_b, cka, ROW_NUMBER() OVER (PARTITION BY layer_a
                            ORDER BY cka DESC NULLS LAST, layer_b) AS position FROM layer_cka
                            WHERE dataset = ? AND model_a = ? AND model_b = ?)
               SELECT l.layer AS layer, best.matched, round(best.mean_r, 3) AS mean_best_r,
                      pairs.layer_b AS one_to_one_layer, round(pairs.mean_r, 3) AS mean_one_to_one_r,
                      pairs.above AS one_to_one_above, cka.layer_b AS most_similar_layer, round(cka.cka, 3) AS cka
               FROM layers l JOIN best ON best.layer_a = l.layer
               LEFT JOIN pairs ON pairs.layer_a = l.layer LEFT JOIN cka ON cka.layer_a = l.layer AND cka.position = 1
               WHERE l.model = ? AND l.dataset = ? ORDER BY l.layer_index, pairs.layer_b""",
            [ds, a, b, MATCH_THRESHOLD, ds, a, b, ds, a, b, a, ds])
        if by_activation.num_rows:
            out[f"{a} -> {b} by activation (r, CKA)"] = by_activation
    return out


# --- Matching by activations: unit correlation and layer CKA (docs/science.md §23) ---------------------
# One place defines the maths, in NumPy. Every product of two large arrays goes through ``matmul``,
# so `neurocat compare --activations --device cuda` runs the same formulas with the products on a GPU
# (``ingest.matching.device_matmul``); this layer never imports torch.

Matmul = Callable[[np.ndarray, np.ndarray], np.ndarray]
MATCH_THRESHOLD = 0.8  # r of the one_to_one_partners view (queries/one_to_one_partners.sql)


def _numpy_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b


def standardised(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, varies) for an (images × units) array: z is (units × images), float32, each row centred and
    scaled to unit length so that z_a · z_b is the Pearson r; units constant over the images or with a
    value that is not finite (no r defined) have ``varies`` False and are left out of every match."""
    x = np.asarray(acts, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"activations must be (images, units), not shape {x.shape}")
    finite = np.isfinite(x).all(axis=0)  # a unit with inf (float16 overflow) or NaN has no r; the others keep theirs
    x = np.where(finite, x, 0.0)
    x = x - x.mean(axis=0)
    norm = np.sqrt((x * x).sum(axis=0))
    varies = finite & (norm > 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0))))
    z = np.zeros((x.shape[1], x.shape[0]), dtype=np.float32)
    z[varies] = (x[:, varies] / norm[varies]).T
    return z, varies


def _stack(acts: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """All layers' standardised units as one (units × images) array and each row's (layer, unit)."""
    zs, names = [], []
    for layer, x in acts.items():
        z, varies = standardised(x)
        zs.append(z[varies])
        names += [(layer, int(u)) for u in np.flatnonzero(varies)]
    images = {np.asarray(x).shape[0] for x in acts.values()}
    if len(images) > 1:
        raise ValueError(f"every layer's activations must cover the same images; row counts {sorted(images)}")
    return (np.concatenate(zs) if zs else np.zeros((0, images.pop() if images else 0), np.float32)), names


def best_correlations(za: np.ndarray, zb: np.ndarray, block: int = 2048, matmul: Matmul | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``za`` its best row of ``zb`` by r and that r, and the same for ``zb``, from
    block × block tiles of the correlation matrix: memory O(block² + units), never units_a × units_b.
    Ties go to the lower index."""
    matmul = matmul or _numpy_matmul
    best_a, arg_a = np.full(len(za), -np.inf, np.float32), np.zeros(len(za), np.int64)
    best_b, arg_b = np.full(len(zb), -np.inf, np.float32), np.zeros(len(zb), np.int64)
    for i in range(0, len(za), block):
        for j in range(0, len(zb), block):
            r = np.asarray(matmul(za[i:i + block], zb[j:j + block].T), dtype=np.float32)
            rows, cols = r.argmax(axis=1), r.argmax(axis=0)
            row_max, col_max = r[np.arange(len(rows)), rows], r[cols, np.arange(len(cols))]
            better = row_max > best_a[i:i + block]  # strict: an earlier tile (lower index) keeps a tie
            best_a[i:i + block][better], arg_a[i:i + block][better] = row_max[better], rows[better] + j
            better = col_max > best_b[j:j + block]
            best_b[j:j + block][better], arg_b[j:j + block][better] = col_max[better], cols[better] + i
    return arg_a, best_a, arg_b, best_b


def unit_matches(acts_a: Mapping[str, np.ndarray], acts_b: Mapping[str, np.ndarray], model_a: str = "a",
                 model_b: str = "b", pairs: list[tuple[str, str]] | None = None, block: int = 2048,
                 matmul: Matmul | None = None) -> pa.Table:
    """Unit-to-unit matches by the Pearson r of their activations over the same images (docs/science.md §23).

    ``acts_a``, ``acts_b``: layer -> (images × units) array, rows the same images in the same order.
    Rows (model_a, layer_a, unit_a, model_b, layer_b, unit_b, correlation, kind):
    kind ``best``: each unit's most correlated unit among all of the other model's units (one-to-many),
    in both directions; kind ``one_to_one``: the assignment maximising the summed r between the units
    of each layer pair (``scipy.optimize.linear_sum_assignment``), written in both orientations.
    ``pairs`` default: each layer of A with the layer of B its units best-match most often.
    Units constant over the images have no r and no row.
    """
    from scipy.optimize import linear_sum_assignment

    matmul = matmul or _numpy_matmul
    za, names_a = _stack(acts_a)
    zb, names_b = _stack(acts_b)
    if za.shape[1] != zb.shape[1]:
        raise ValueError(f"the two models' activations cover different numbers of images ({za.shape[1]}, {zb.shape[1]})")
    rows: list[tuple] = []
    if len(za) and len(zb):
        arg_a, best_a, arg_b, best_b = best_correlations(za, zb, block, matmul)
        rows += [(model_a, *names_a[i], model_b, *names_b[j], float(r), "best") for i, (j, r) in enumerate(zip(arg_a, best_a))]
        rows += [(model_b, *names_b[j], model_a, *names_a[i], float(r), "best") for j, (i, r) in enumerate(zip(arg_b, best_b))]
        if pairs is None:
            votes: dict[str, dict[str, int]] = {}
            for i, j in enumerate(arg_a):
                layer_b = names_b[j][0]
                votes.setdefault(names_a[i][0], {}).setdefault(layer_b, 0)
                votes[names_a[i][0]][layer_b] += 1
            order_b = {layer: k for k, layer in enumerate(acts_b)}
            pairs = [(la, max(v, key=lambda lb: (v[lb], -order_b[lb]))) for la, v in votes.items()]
    rows_of = lambda names, layer: [k for k, (l, _) in enumerate(names) if l == layer]  # noqa: E731
    for layer_a, layer_b in pairs or []:
        for layer, known, model in ((layer_a, acts_a, model_a), (layer_b, acts_b, model_b)):
            if layer not in known:
                raise ValueError(f"unknown layer {layer!r} of {model}; valid: {', '.join(known)}")
        ia, ib = rows_of(names_a, layer_a), rows_of(names_b, layer_b)
        if not ia or not ib:
            continue
        r = np.asarray(matmul(za[ia], zb[ib].T), dtype=np.float64)
        for i, j in zip(*linear_sum_assignment(r, maximize=True)):
            rows.append((model_a, *names_a[ia[i]], model_b, *names_b[ib[j]], float(r[i, j]), "one_to_one"))
            rows.append((model_b, *names_b[ib[j]], model_a, *names_a[ia[i]], float(r[i, j]), "one_to_one"))
    columns = ("model_a", "layer_a", "unit_a", "model_b", "layer_b", "unit_b", "correlation", "kind")
    types = (pa.string(), pa.string(), pa.int32(), pa.string(), pa.string(), pa.int32(), pa.float64(), pa.string())
    return pa.table({c: pa.array([r[k] for r in rows], t) for k, (c, t) in enumerate(zip(columns, types))})


def _hsic_full(fa: np.ndarray, fb: np.ndarray, n: int, matmul: Matmul) -> np.ndarray:
    """⟨K̄_a, K̄_b⟩_F for flattened centred Gram matrices: HSIC up to the factor 1/(n − 1)², which CKA cancels."""
    return np.asarray(matmul(fa, fb.T), dtype=np.float64)


def _hsic_unbiased(fa: np.ndarray, fb: np.ndarray, n: int, matmul: Matmul) -> np.ndarray:
    """HSIC₁ (Song et al. 2012) of every pair of layers from flattened Gram matrices with a zero diagonal."""
    ka, kb = fa.reshape(len(fa), n, n), fb.reshape(len(fb), n, n)
    trace = np.asarray(matmul(fa, fb.T), dtype=np.float64)            # tr(K̃ L̃) = ⟨K̃, L̃⟩_F (symmetric)
    sums_a, sums_b = ka.sum(axis=(1, 2), dtype=np.float64), kb.sum(axis=(1, 2), dtype=np.float64)  # 1ᵀK̃1
    rows_ab = np.asarray(matmul(ka.sum(axis=2), kb.sum(axis=2).T), dtype=np.float64)  # 1ᵀK̃L̃1 = (K̃1)·(L̃1)
    return (trace + np.outer(sums_a, sums_b) / ((n - 1) * (n - 2)) - 2 / (n - 2) * rows_ab) / (n * (n - 3))


def _grams(acts: Mapping[str, np.ndarray], rows: np.ndarray, unbiased: bool, matmul: Matmul) -> np.ndarray:
    """(layers, n²) flattened linear Gram matrices X Xᵀ of the images ``rows``, features centred over
    them (HSIC₁ does not change when features shift, the full estimator needs it); the diagonal zeroed
    for HSIC₁."""
    out = np.empty((len(acts), len(rows) ** 2), dtype=np.float32)
    for k, x in enumerate(acts.values()):
        x = np.asarray(x)[rows].astype(np.float32)  # only the batch's rows (the kept values are float16)
        x = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
        gram = np.asarray(matmul(x, np.ascontiguousarray(x.T)), dtype=np.float32)
        if unbiased:
            np.fill_diagonal(gram, 0)
        out[k] = gram.ravel()
    return out


def cka_grid(acts_a: Mapping[str, np.ndarray], acts_b: Mapping[str, np.ndarray] | None = None,
             estimator: str = "auto", batch: int = 512, seed: int = 0, matmul: Matmul | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Linear CKA of every layer pair: (A × B, A × A, B × B, estimator used). ``full``: the whole-set
    estimator of Kornblith et al. (2019); ``unbiased``: mean HSIC₁ over minibatches of ``batch`` images
    in a seeded random order (Nguyen et al. 2021), memory O(layers × batch²); ``auto``: full when the
    images fit one batch."""
    matmul = matmul or _numpy_matmul
    acts_b = acts_a if acts_b is None else acts_b
    n = {np.asarray(x).shape[0] for x in (*acts_a.values(), *acts_b.values())}
    if len(n) != 1:
        raise ValueError(f"every layer's activations must cover the same images; row counts {sorted(n)}")
    n = n.pop()
    if estimator == "auto":
        estimator = "full" if n <= batch else "unbiased"
    if estimator not in ("full", "unbiased"):
        raise ValueError(f"estimator must be auto, full or unbiased, not {estimator!r}")
    if estimator == "full":
        chunks, hsic = [np.arange(n)], _hsic_full
    else:
        if n < 4:
            raise ValueError(f"the unbiased estimator needs at least 4 images, not {n}")
        order = np.random.default_rng(seed).permutation(n)
        chunks = [order[lo:lo + batch] for lo in range(0, n, batch)]
        if len(chunks) > 1 and len(chunks[-1]) < 4:  # HSIC₁ needs 4 images: fold a tiny remainder in
            chunks[-2:] = [np.concatenate(chunks[-2:])]
        hsic = _hsic_unbiased
    same = acts_b is acts_a
    ab = np.zeros((len(acts_a), len(acts_b)))
    aa, bb = np.zeros((len(acts_a),) * 2), np.zeros((len(acts_b),) * 2)
    for rows in chunks:
        fa = _grams(acts_a, rows, estimator == "unbiased", matmul)
        fb = fa if same else _grams(acts_b, rows, estimator == "unbiased", matmul)
        aa += hsic(fa, fa, len(rows), matmul)
        bb = aa if same else bb + hsic(fb, fb, len(rows), matmul)
        ab = aa if same else ab + hsic(fa, fb, len(rows), matmul)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_a, norm_b = np.sqrt(np.diag(aa)), np.sqrt(np.diag(bb))
        return (ab / np.outer(norm_a, norm_b), aa / np.outer(norm_a, norm_a), bb / np.outer(norm_b, norm_b),
                estimator)


def layer_cka(acts_a: Mapping[str, np.ndarray], acts_b: Mapping[str, np.ndarray] | None = None,
              model_a: str = "a", model_b: str | None = None, estimator: str = "auto", batch: int = 512,
              seed: int = 0, within: bool = False, matmul: Matmul | None = None) -> pa.Table:
    """Linear CKA of every layer of A with every layer of B (of A with itself without ``acts_b``) as rows
    (model_a, layer_a, model_b, layer_b, cka, estimator, n_images); ``within`` adds A × A and B × B.
    See ``cka_grid`` and docs/science.md §23."""
    model_b = model_a if acts_b is None else (model_b or "b")
    ab, aa, bb, used = cka_grid(acts_a, acts_b, estimator, batch, seed, matmul)
    n = np.asarray(next(iter(acts_a.values()))).shape[0]
    grids = [(model_a, list(acts_a), model_b, list(acts_b if acts_b is not None else acts_a), ab)]
    if within and acts_b is not None:
        grids += [(model_a, list(acts_a), model_a, list(acts_a), aa), (model_b, list(acts_b), model_b, list(acts_b), bb)]
    # A constant layer has no CKA (0/0): NULL, as the schema promises, not NaN, which DuckDB sorts above
    # every number (ORDER BY cka DESC would pick a dead layer) and SQLite would store as NULL anyway.
    rows = [(ma, la, mb, lb, float(grid[i, j]) if np.isfinite(grid[i, j]) else None, used, n)
            for ma, layers_a, mb, layers_b, grid in grids for i, la in enumerate(layers_a) for j, lb in enumerate(layers_b)]
    columns = ("model_a", "layer_a", "model_b", "layer_b", "cka", "estimator", "n_images")
    types = (pa.string(), pa.string(), pa.string(), pa.string(), pa.float64(), pa.string(), pa.int32())
    return pa.table({c: pa.array([r[k] for r in rows], t) for k, (c, t) in enumerate(zip(columns, types))})


# --- The catalogue's side: read the kept activations, match, store ---------------------------------------

MEASURES = ("max", "mean")


def kept_activations(cat: Catalog, model: str, dataset: str, layers: list[str] | None = None,
                     measure: str = "max") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(probe image ids ascending, layer -> (images × units) float32) from ``image_activations``,
    layers in model order. No rows (ingested with --keep-activations 0) or an unknown layer is a ValueError."""
    if measure not in MEASURES:
        raise ValueError(f"--measure must be one of {', '.join(MEASURES)}, not {measure!r}")
    held = [r[0] for r in cat.con.execute(
        "SELECT l.layer FROM layers l WHERE l.model = ? AND l.dataset = ? AND EXISTS (SELECT 1 FROM image_activations a "
        "WHERE a.model = l.model AND a.dataset = l.dataset AND a.layer = l.layer) ORDER BY l.layer_index",
        [model, dataset]).fetchall()]
    if not held:
        raise ValueError(f"{model!r} on {dataset!r} kept no per-image activations (ingested with --keep-activations 0 "
                         f"or before it existed): re-ingest it with --keep-activations K")
    unknown = [layer for layer in layers or [] if layer not in held]
    if unknown:
        raise ValueError(f"unknown layer{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} of {model!r}; "
                         f"valid: {', '.join(held)}")
    ids = None
    acts = {}
    for layer in layers or held:
        t = cat.query(f'SELECT unit, image_id, "{measure}" AS v FROM image_activations WHERE model = ? AND dataset = ? '
                      "AND layer = ?", [model, dataset, layer])
        units, images = t.column("unit").to_numpy(), t.column("image_id").to_numpy()
        layer_ids = np.unique(images)
        if ids is None:
            ids = layer_ids
        elif not np.array_equal(ids, layer_ids):
            raise ValueError(f"{model!r} kept different images in different layers; re-ingest it")
        x = np.full((len(ids), units.max() + 1), np.nan, np.float32)
        x[np.searchsorted(ids, images), units] = t.column("v").to_numpy(zero_copy_only=False)
        acts[layer] = x
    return ids, acts


def match_activations(cat: Catalog, model_a: str, model_b: str, dataset: str | None = None,
                      layers_a: list[str] | None = None, layers_b: list[str] | None = None, measure: str = "max",
                      estimator: str = "auto", block: int = 2048, batch: int = 512,
                      matmul: Matmul | None = None) -> dict[str, int]:
    """Match two models by their kept activations (`neurocat compare --activations`): ``unit_matches``
    and ``layer_cka`` (A × B, A × A, B × B) computed and stored in one transaction, replacing
    this pair's earlier rows. Returns rows written per table. Both models must have kept the same
    probe images; docs/science.md §23. ``layers_a`` and ``layers_b`` of equal length pair up
    element-wise for the one-to-one assignment (default: each A layer with its most-voted B layer)."""
    if model_a == model_b:
        raise ValueError(f"compare --activations needs two different models, not {model_a!r} twice "
                         f"(its layer CKA with itself comes with any comparison)")
    ds = shared_dataset(cat, model_a, model_b, dataset)
    ids_a, acts_a = kept_activations(cat, model_a, ds, layers_a, measure)
    ids_b, acts_b = kept_activations(cat, model_b, ds, layers_b, measure)
    if not np.array_equal(ids_a, ids_b):
        shared = len(np.intersect1d(ids_a, ids_b))
        raise ValueError(f"{model_a!r} and {model_b!r} did not keep the same probe images on {ds!r} ({len(ids_a)} and "
                         f"{len(ids_b)} images, {shared} shared): re-ingest them with the same --keep-activations")
    if len(ids_a) < 4:
        raise ValueError(f"matching needs at least 4 probe images; {model_a!r} kept {len(ids_a)}")
    extra = {"dataset": ds, "measure": measure, "n_images": len(ids_a)}
    # Both lists of one length name the layer pairs of the one-to-one assignment; else the most-voted B layer.
    pairs = list(zip(layers_a, layers_b)) if layers_a and layers_b and len(layers_a) == len(layers_b) else None
    tables = {"unit_matches": unit_matches(acts_a, acts_b, model_a, model_b, pairs, block=block, matmul=matmul),
              "layer_cka": layer_cka(acts_a, acts_b, model_a, model_b, estimator, batch, within=True, matmul=matmul)}
    con = cat.con
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM unit_matches WHERE dataset = ? AND ((model_a = ? AND model_b = ?) OR "
                    "(model_a = ? AND model_b = ?))", [ds, model_a, model_b, model_b, model_a])
        con.execute("DELETE FROM layer_cka WHERE dataset = ? AND ((model_a = ? AND model_b = ?) OR (model_a = ? AND "
                    "model_b = ?) OR (model_a = model_b AND model_a IN (?, ?)))",
                    [ds, model_a, model_b, model_b, model_a, model_a, model_b])
        for name, table in tables.items():
            for column, value in extra.items():
                if column not in table.column_names:
                    table = table.append_column(column, pa.array([value] * table.num_rows))
            con.register("_incoming", table)
            columns = ", ".join(f'"{c}"' for c in table.column_names)
            con.execute(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM _incoming")
            con.unregister("_incoming")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return {name: t.num_rows for name, t in tables.items()}
