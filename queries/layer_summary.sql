-- One row per layer: size, receptive field, dead neurons, mean indexes and share of colour-selective neurons.
SELECT l.model, l.dataset, l.layer, l.layer_index, l.channels, l.rf_size, l.rf_stride, l.n_dead,
    AVG(n.alpha) AS mean_alpha,
    AVG(n.gamma) AS mean_gamma,
    CAST(SUM(CASE WHEN n.alpha >= m.color_threshold THEN 1 ELSE 0 END) AS DOUBLE) / l.channels AS color_selective_fraction
FROM layers AS l
JOIN models AS m ON m.model = l.model AND m.dataset = l.dataset
JOIN neurons AS n ON n.model = l.model AND n.dataset = l.dataset AND n.layer = l.layer
GROUP BY l.model, l.dataset, l.layer, l.layer_index, l.channels, l.rf_size, l.rf_stride, l.n_dead
ORDER BY l.model, l.dataset, l.layer_index, l.layer
