-- γ with each class replaced by its ancestor `depth` steps up label_hierarchy (a class with a shorter chain
-- stops at its root). Depth 0 is neurons.gamma; two leaf classes under one parent count once (M = 1) at depth 1.
WITH levels AS (
    SELECT DISTINCT dataset, depth FROM label_hierarchy
),
chain_tops AS (
    SELECT dataset, label, MAX(depth) AS top_depth FROM label_hierarchy GROUP BY dataset, label
),
mapped AS (
    SELECT cf.model, cf.dataset, cf.layer, cf.unit, lv.depth, h.ancestor, h.name, cf.count, cf.frequency
    FROM class_frequencies AS cf
    JOIN levels AS lv ON lv.dataset = cf.dataset
    JOIN chain_tops AS t ON t.dataset = cf.dataset AND t.label = cf.label
    JOIN label_hierarchy AS h ON h.dataset = cf.dataset AND h.label = cf.label
        AND h.depth = CASE WHEN lv.depth < t.top_depth THEN lv.depth ELSE t.top_depth END
),
grouped AS (
    SELECT model, dataset, layer, unit, depth, ancestor, MAX(name) AS name,
        SUM(count) AS count, SUM(frequency) AS frequency
    FROM mapped
    GROUP BY model, dataset, layer, unit, depth, ancestor
),
ranked AS (
    SELECT g.model, g.dataset, g.layer, g.unit, g.depth, g.ancestor, g.name, g.count, g.frequency,
        COALESCE(SUM(g.frequency) OVER (PARTITION BY g.model, g.dataset, g.layer, g.unit, g.depth
            ORDER BY g.frequency DESC, g.ancestor ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before,
        ROW_NUMBER() OVER (PARTITION BY g.model, g.dataset, g.layer, g.unit, g.depth
            ORDER BY g.frequency DESC, g.ancestor) AS position
    FROM grouped AS g
),
counted AS (
    SELECT r.model, r.dataset, r.layer, r.unit, r.depth,
        SUM(r.count) AS n,
        SUM(r.frequency) AS weight,
        SUM(CASE WHEN r.frequency > 0 AND r.before < m.gamma_th - 1e-9 THEN 1 ELSE 0 END) AS m,
        MAX(CASE WHEN r.position = 1 THEN r.ancestor END) AS top_ancestor,
        MAX(CASE WHEN r.position = 1 THEN r.name END) AS top_name,
        MAX(CASE WHEN r.position = 1 THEN r.frequency END) AS top_frequency
    FROM ranked AS r
    JOIN models AS m ON m.model = r.model AND m.dataset = r.dataset
    GROUP BY r.model, r.dataset, r.layer, r.unit, r.depth
)
SELECT model, dataset, layer, unit, depth, n,
    CASE WHEN weight > 0 AND n > 1 THEN m END AS m,
    CASE WHEN weight > 0 AND n > 1 THEN CAST(n - m AS DOUBLE) / (n - 1) END AS gamma,
    top_ancestor, top_name, top_frequency
FROM counted
