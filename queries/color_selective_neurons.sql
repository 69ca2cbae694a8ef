-- Colour-selective neurons (alpha >= the model's colour_threshold), with hue and basic colour name.
SELECT n.model, n.dataset, n.layer, n.unit, n.alpha, n.hue, n.color_name, n.gamma, n.nf_png
FROM neurons AS n
JOIN models AS m ON m.model = n.model AND m.dataset = n.dataset
WHERE n.alpha >= m.color_threshold
