-- Pairs of live neurons of two models sharing top images: the number shared and the Jaccard index
-- shared / (n_a + n_b - shared) of their top-image sets. Filter by model_a / layer_a first on large catalogues.
SELECT s.dataset, s.model_a, s.layer_a, s.unit_a, s.model_b, s.layer_b, s.unit_b,
    COUNT(*) AS shared, ua.n_top AS n_a, ub.n_top AS n_b,
    CAST(COUNT(*) AS DOUBLE) / (ua.n_top + ub.n_top - COUNT(*)) AS jaccard
FROM shared_top_images AS s
JOIN units AS ua ON ua.model = s.model_a AND ua.dataset = s.dataset AND ua.layer = s.layer_a AND ua.unit = s.unit_a
JOIN units AS ub ON ub.model = s.model_b AND ub.dataset = s.dataset AND ub.layer = s.layer_b AND ub.unit = s.unit_b
WHERE NOT ua.dead AND NOT ub.dead
GROUP BY s.dataset, s.model_a, s.layer_a, s.unit_a, s.model_b, s.layer_b, s.unit_b, ua.n_top, ub.n_top
