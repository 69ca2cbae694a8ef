-- Every live neuron's class selectivity gamma, its M, and its three strongest classes by f_c.
SELECT n.model, n.dataset, n.layer, n.unit, n.gamma, n.gamma_m,
    MAX(CASE WHEN c.class_rank = 1 THEN c.label END) AS class_1,
    MAX(CASE WHEN c.class_rank = 1 THEN c.frequency END) AS frequency_1,
    MAX(CASE WHEN c.class_rank = 2 THEN c.label END) AS class_2,
    MAX(CASE WHEN c.class_rank = 2 THEN c.frequency END) AS frequency_2,
    MAX(CASE WHEN c.class_rank = 3 THEN c.label END) AS class_3,
    MAX(CASE WHEN c.class_rank = 3 THEN c.frequency END) AS frequency_3
FROM neurons AS n
JOIN (
    SELECT model, dataset, layer, unit, label, frequency,
        ROW_NUMBER() OVER (PARTITION BY model, dataset, layer, unit ORDER BY frequency DESC, label) AS class_rank
    FROM class_frequencies
) AS c
    ON c.model = n.model AND c.dataset = n.dataset AND c.layer = n.layer AND c.unit = n.unit
WHERE n.gamma IS NOT NULL AND c.class_rank <= 3
GROUP BY n.model, n.dataset, n.layer, n.unit, n.gamma, n.gamma_m
