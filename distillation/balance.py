"""Gradient balance of the distillation terms: how hard each one pulls on the student.

A loss weight means little by itself: FSD's values are ~1 while the heatmap
MSE's are ~1e-3, and their gradients differ by other factors again. What
decides whether a term helps or swamps the landmark loss is the norm of its
gradient with respect to the student's weights, relative to the heatmap
loss's. `term_gradient_norms` measures that (TensorFlow backend), and
`balanced_weights` turns it into weights that give each teacher term a chosen
fraction of the heatmap loss's pull at the start of training.
"""

from __future__ import annotations

import numpy as np

TERMS = ("heatmap_loss", "fa_loss", "fs_loss", "kd_loss")
WEIGHT_OF = {"fa_loss": "fa_weight", "fs_loss": "fs_weight", "kd_loss": "kd_weight"}


def term_gradient_norms(distiller, x, heatmaps, label_weight=None) -> dict[str, float]:
    """Global L2 norm of each *unweighted* term's gradient w.r.t. the student's trainable weights.

    Terms whose weight is 0 in the distiller's compile() are not computed
    (reported as 0). BatchNorm runs in training mode, as in a real step,
    but no variable changes (the moving statistics are restored).

    Args:
        distiller: A compiled `Distiller`.
        x: One batch of its inputs (see `Distiller`).
        heatmaps: [B, Hm, Hm, K] ground truth.
        label_weight: [B] or None.

    Returns:
        {term: norm} for ``heatmap_loss``, ``fa_loss``, ``fs_loss``, ``kd_loss``.
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError("term_gradient_norms uses tf.GradientTape: run it with KERAS_BACKEND=tensorflow")
    variables = distiller.student.trainable_variables
    saved = [v.numpy() for v in distiller.non_trainable_variables]
    with tf.GradientTape(persistent=True) as tape:
        terms = distiller.compute_losses(x, heatmaps, label_weight, training=True)
    norms = {}
    for name in TERMS:
        grads = [g for g in tape.gradient(terms[name], [v.value for v in variables]) if g is not None]
        norms[name] = float(tf.linalg.global_norm(grads).numpy()) if grads else 0.0
    del tape
    for v, value in zip(distiller.non_trainable_variables, saved, strict=True):
        v.assign(value)
    return norms


def balanced_weights(norms: list[dict[str, float]], ratio: float | dict[str, float]) -> dict[str, float]:
    """Weights that make each teacher term's gradient `ratio` x the heatmap loss's (median over batches).

    Args:
        norms: `term_gradient_norms` results, one per batch.
        ratio: Target |w * grad(term)| / |grad(heatmap)|, one for all terms
            or per term name (``fa_loss`` ...).

    Returns:
        {"fa_weight": ..., "fs_weight": ..., "kd_weight": ...} for the terms
        that were measured (non-zero gradient).
    """
    out = {}
    for term, weight_name in WEIGHT_OF.items():
        r = ratio[term] if isinstance(ratio, dict) else ratio
        hm = np.median([n["heatmap_loss"] for n in norms])
        t = np.median([n[term] for n in norms])
        if t > 0 and r > 0:
            out[weight_name] = float(r * hm / t)
    return out
