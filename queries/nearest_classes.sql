-- For each class, the other classes by cosine distance of their representative vectors (rank 1 = nearest).
SELECT model, dataset, label_a AS label, label_b AS other_label, distance,
    ROW_NUMBER() OVER (PARTITION BY model, dataset, label_a ORDER BY distance, label_b) AS rank
FROM class_distances
WHERE label_a <> label_b
