-- The two colour indexes per layer: the paper's PCA-angle α of the NF and the response-based color_drop
-- (activation lost when the top crops turn gray); shares above the model's colour threshold and their agreement.
SELECT l.model, l.dataset, l.layer, l.layer_index, COUNT(n.alpha) AS n,
    AVG(n.alpha) AS mean_alpha,
    AVG(n.color_drop) AS mean_color_drop,
    CAST(SUM(CASE WHEN n.alpha >= m.color_threshold THEN 1 ELSE 0 END) AS DOUBLE) / NULLIF(COUNT(n.alpha), 0)
        AS alpha_selective_fraction,
    CAST(SUM(CASE WHEN n.color_drop >= m.color_threshold THEN 1 ELSE 0 END) AS DOUBLE) / NULLIF(COUNT(n.color_drop), 0)
        AS drop_selective_fraction,
    CAST(SUM(CASE WHEN (n.alpha >= m.color_threshold) = (n.color_drop >= m.color_threshold) THEN 1 ELSE 0 END)
        AS DOUBLE) / NULLIF(COUNT(n.color_drop), 0) AS agreement
FROM layers AS l
JOIN models AS m ON m.model = l.model AND m.dataset = l.dataset
JOIN neurons AS n ON n.model = l.model AND n.dataset = l.dataset AND n.layer = l.layer
GROUP BY l.model, l.dataset, l.layer, l.layer_index
