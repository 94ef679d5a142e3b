"""Figures: training curves (``curves``), feature maps and kernels (``maps``), the confusion matrix
(``confusion``). Files only (matplotlib's Agg backend), written atomically."""
