-- One row per neuron: its facts from `units` and every known index from `neuron_indexes` as a column.
-- A new index lands in neuron_indexes without a schema change. Indexes not named here (plugins, see
-- README) become columns too: the catalogue fills the two `-- @more-indexes` lines when it creates the view.
SELECT
    u.model, u.dataset, u.layer, u.unit,
    ix.alpha, ix.gamma, ix.curve_area, ix.nf_self_activation,
    ix.sparsity, ix.flatness, ix.mf_degree, ix.mf_zscore, ix.mf_pvalue,
    ix.color_drop,
    ix.orientation_index, ix.preferred_angle, ix.orientation_selectivity, ix.symmetry_index,
    ix.gamma_null_mean, ix.gamma_p, ix.gamma_excess, ix.gamma_lo, ix.gamma_hi, ix.alpha_lo, ix.alpha_hi,
    -- @more-indexes: columns
    CASE WHEN ix.mf_zscore > 0 THEN 'multi-faceted' WHEN ix.mf_zscore <= 0 THEN 'single-faceted' END AS faceted,
    u.hue, u.color_name, u.gamma_m, u.a_max, u.dead, u.n_top, u.nf_n_used, u.alpha_method, u.nf_png
FROM units AS u
LEFT JOIN (
    SELECT model, dataset, layer, unit,
        MAX(CASE WHEN "index" = 'alpha' THEN value END) AS alpha,
        MAX(CASE WHEN "index" = 'gamma' THEN value END) AS gamma,
        MAX(CASE WHEN "index" = 'curve_area' THEN value END) AS curve_area,
        MAX(CASE WHEN "index" = 'nf_self_activation' THEN value END) AS nf_self_activation,
        MAX(CASE WHEN "index" = 'sparsity' THEN value END) AS sparsity,
        MAX(CASE WHEN "index" = 'flatness' THEN value END) AS flatness,
        MAX(CASE WHEN "index" = 'mf_degree' THEN value END) AS mf_degree,
        MAX(CASE WHEN "index" = 'mf_zscore' THEN value END) AS mf_zscore,
        MAX(CASE WHEN "index" = 'mf_pvalue' THEN value END) AS mf_pvalue,
        MAX(CASE WHEN "index" = 'color_drop' THEN value END) AS color_drop,
        MAX(CASE WHEN "index" = 'orientation_index' THEN value END) AS orientation_index,
        MAX(CASE WHEN "index" = 'preferred_angle' THEN value END) AS preferred_angle,
        MAX(CASE WHEN "index" = 'orientation_selectivity' THEN value END) AS orientation_selectivity,
        MAX(CASE WHEN "index" = 'symmetry_index' THEN value END) AS symmetry_index,
        MAX(CASE WHEN "index" = 'gamma_null_mean' THEN value END) AS gamma_null_mean,
        MAX(CASE WHEN "index" = 'gamma_p' THEN value END) AS gamma_p,
        MAX(CASE WHEN "index" = 'gamma_excess' THEN value END) AS gamma_excess,
        MAX(CASE WHEN "index" = 'gamma_lo' THEN value END) AS gamma_lo,
        MAX(CASE WHEN "index" = 'gamma_hi' THEN value END) AS gamma_hi,
        MAX(CASE WHEN "index" = 'alpha_lo' THEN value END) AS alpha_lo,
        MAX(CASE WHEN "index" = 'alpha_hi' THEN value END) AS alpha_hi
        -- @more-indexes: pivot
    FROM neuron_indexes
    GROUP BY model, dataset, layer, unit
) AS ix
    ON ix.model = u.model AND ix.dataset = u.dataset AND ix.layer = u.layer AND ix.unit = u.unit
