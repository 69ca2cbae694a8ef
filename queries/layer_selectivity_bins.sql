-- Per layer, the fraction of live neurons in each 0.1-wide bin of alpha and of gamma (Rafegas Fig. 5-6).
-- Every (layer, index, bin) appears, empty bins with n = 0.
SELECT l.model, l.dataset, l.layer, l.layer_index, ix.name AS "index", b.bin, b.lo, b.hi,
    COALESCE(h.n, 0) AS n,
    CAST(COALESCE(h.n, 0) AS DOUBLE) / NULLIF(l.channels - l.n_dead, 0) AS fraction
FROM layers AS l
CROSS JOIN (SELECT 'alpha' AS name UNION ALL SELECT 'gamma') AS ix
CROSS JOIN index_bins AS b
LEFT JOIN (
    SELECT v.model, v.dataset, v.layer, v."index" AS name, bb.bin, COUNT(*) AS n
    FROM neuron_indexes AS v
    JOIN index_bins AS bb ON v.value >= bb.lo AND v.value < bb.hi
    WHERE v."index" IN ('alpha', 'gamma')
    GROUP BY v.model, v.dataset, v.layer, v."index", bb.bin
) AS h
    ON h.model = l.model AND h.dataset = l.dataset AND h.layer = l.layer AND h.name = ix.name AND h.bin = b.bin
