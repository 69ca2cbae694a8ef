-- Per layer: single- and multi-faceted neurons and the mean MF degree (Sadeghi Fig. 2-3).
SELECT l.model, l.dataset, l.layer, l.layer_index, l.channels,
    SUM(CASE WHEN n.faceted = 'single-faceted' THEN 1 ELSE 0 END) AS single_faceted,
    SUM(CASE WHEN n.faceted = 'multi-faceted' THEN 1 ELSE 0 END) AS multi_faceted,
    CAST(SUM(CASE WHEN n.faceted = 'single-faceted' THEN 1 ELSE 0 END) AS DOUBLE) / l.channels AS single_faceted_fraction,
    AVG(n.mf_degree) AS mean_mf_degree,
    AVG(n.sparsity) AS mean_sparsity,
    AVG(n.flatness) AS mean_flatness
FROM layers AS l
JOIN neurons AS n ON n.model = l.model AND n.dataset = l.dataset AND n.layer = l.layer
GROUP BY l.model, l.dataset, l.layer, l.layer_index, l.channels
