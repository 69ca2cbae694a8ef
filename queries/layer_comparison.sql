-- Every model's layers at their relative depth (0: first ingested layer, 1: last), with α and γ summaries,
-- so models ingested on the same data set line up side by side (ORDER BY dataset, relative_depth, model).
SELECT s.dataset, s.model, s.layer, s.layer_index,
    CAST(s.layer_index - r.first_index AS DOUBLE) / NULLIF(r.last_index - r.first_index, 0) AS relative_depth,
    s.channels, s.rf_size, s.n_dead, s.mean_alpha, s.mean_gamma, s.color_selective_fraction,
    c.class_selective_fraction
FROM layer_summary AS s
JOIN (
    SELECT model, dataset, MIN(layer_index) AS first_index, MAX(layer_index) AS last_index
    FROM layers GROUP BY model, dataset
) AS r ON r.model = s.model AND r.dataset = s.dataset
JOIN (
    SELECT model, dataset, layer,
        CAST(SUM(CASE WHEN gamma_m = 1 THEN 1 ELSE 0 END) AS DOUBLE) / COUNT(*) AS class_selective_fraction
    FROM neurons GROUP BY model, dataset, layer
) AS c ON c.model = s.model AND c.dataset = s.dataset AND c.layer = s.layer
