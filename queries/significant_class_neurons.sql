-- Neurons whose class selectivity gamma beats the class-prior null (docs/science.md §22) at a false
-- discovery rate of 1 % per layer: Benjamini-Hochberg over the gamma_p of the layer's neurons that have
-- one. gamma_q is the BH-adjusted p-value, min over ranks j >= i of gamma_p(j) * n_tests / j (at most 1);
-- a neuron is listed when gamma_q < 0.01, which is the step-up rule "p(i) <= i * 0.01 / n_tests for
-- some i at or above its rank".
SELECT model, dataset, layer, unit, gamma, gamma_m, gamma_null_mean, gamma_excess, gamma_p, gamma_q, n_tests,
    gamma_lo, gamma_hi
FROM (
    SELECT model, dataset, layer, unit, gamma, gamma_m, gamma_null_mean, gamma_excess, gamma_p, n_tests,
        gamma_lo, gamma_hi,
        CASE WHEN adjusted > 1 THEN 1.0 ELSE adjusted END AS gamma_q
    FROM (
        SELECT model, dataset, layer, unit, gamma, gamma_m, gamma_null_mean, gamma_excess, gamma_p, n_tests,
            gamma_lo, gamma_hi,
            MIN(gamma_p * n_tests / p_rank) OVER (
                PARTITION BY model, dataset, layer ORDER BY p_rank DESC
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS adjusted
        FROM (
            SELECT model, dataset, layer, unit, gamma, gamma_m, gamma_null_mean, gamma_excess, gamma_p,
                gamma_lo, gamma_hi,
                ROW_NUMBER() OVER (PARTITION BY model, dataset, layer ORDER BY gamma_p, unit) AS p_rank,
                COUNT(*) OVER (PARTITION BY model, dataset, layer) AS n_tests
            FROM neurons
            WHERE gamma_p IS NOT NULL
        ) AS ranked
    ) AS stepped
) AS adjusted_p
WHERE gamma_q < 0.01
