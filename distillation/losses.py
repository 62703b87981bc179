"""MobileFAN's distillation losses and the feature adaptor (any Keras backend).

Feature-aligned distillation (FAD) matches the student's features, mapped to
the teacher's channels by a small adaptor, to the teacher's features by MSE.
Feature-similarity distillation (FSD) matches the *structure* of the two
feature maps: for each, the N x N matrix (N = H * W) of cosine similarities
between the feature vectors at every pair of spatial positions; the two
matrices are compared by MSE. FSD needs no adaptor (the matrices are N x N
whatever the channel counts), so it uses the student's raw features.
Output-level distillation (KD) uses the teacher's heatmaps as soft targets.

Cross-resolution (a teacher whose input is r times the student's, e.g. the
256 px default teaching the 128 px lite model): every teacher map is brought
to the student's grid *before* a loss is computed. Features are average-
pooled r x r (`match_resolution`), which keeps the student's graph and the
FSD matrices at the student's size (pooling the 64 x 64 teacher stage instead
of upsampling the student cuts the N x N matrices 16-fold) and is the
teacher's own feature averaged over each student cell. Heatmaps go through
`soft_heatmap_targets`, which also keeps the Gaussians' width in student
pixels equal to the ground truth's.

`distillation_terms` is the one function that computes every term from the
two models' outputs; the `Distiller` calls it on every backend.
"""

from __future__ import annotations

import math

import keras
from keras import ops

# l2_normalize's epsilon (on the squared norm): vectors shorter than 1e-6 are
# treated as having norm 1e-6, so all-zero (dead ReLU) positions give zero
# similarity and a finite gradient.
NORM_EPS = 1e-12


def feature_aligned_loss(student_feat_adapted, teacher_feat, normalize: bool = False):
    """FAD: mean squared error between adapted student and teacher features.

    With ``normalize`` the MSE is divided by the teacher feature's mean square
    (a constant: no gradient flows through it), making the term independent
    of the teacher's feature scale. Why: the authors' weight 0.01 assumes
    features of order 1; our hourglass teacher's merged taps reach |x| ~ 10,
    where the raw MSE (~22, measured) outweighed the heatmap loss (~0.003)
    about 80-fold and the student learnt features instead of landmarks.

    Args:
        student_feat_adapted: [B, H, W, C_t], the adaptor's output.
        teacher_feat: [B, H, W, C_t].
        normalize: Divide by mean(teacher_feat ** 2) (relative MSE).

    Returns:
        Scalar float32, the mean over all B * H * W * C_t elements.
    """
    return ops.mean(feature_aligned_per_item(student_feat_adapted, teacher_feat, normalize))


def _unit_vectors(feat, pool_size: int | None = None):
    """[B, H, W, C] -> [B, N, C] float32 unit feature vectors (N = H * W after optional pooling)."""
    feat = ops.cast(feat, "float32")
    if pool_size and pool_size > 1:
        h, w = feat.shape[1], feat.shape[2]
        if (h is not None and h % pool_size) or (w is not None and w % pool_size):
            raise ValueError(f"fs_pool_size {pool_size} does not divide the {h}x{w} feature map")
        feat = ops.average_pool(feat, pool_size, pool_size, "valid")
    shape = ops.shape(feat)
    flat = ops.reshape(feat, (shape[0], shape[1] * shape[2], shape[3]))  # [B, N, C]
    # x / max(|x|, 1e-6), written out so every Keras backend floors the norm the same way.
    return flat * ops.rsqrt(ops.maximum(ops.sum(ops.square(flat), axis=-1, keepdims=True), NORM_EPS))


def cosine_similarity_matrix(feat, pool_size: int | None = None):
    """Cosine similarity between the feature vectors at every pair of positions.

    Args:
        feat: [B, H, W, C] feature map.
        pool_size: Optional average-pooling window (and stride) applied first;
            H and W must be divisible by it.

    Returns:
        [B, N, N] float32 with N = H * W (after pooling), entries in [-1, 1].
    """
    unit = _unit_vectors(feat, pool_size)
    return ops.matmul(unit, ops.transpose(unit, (0, 2, 1)))


def _sum_sq(x):
    return ops.sum(ops.square(x), axis=(1, 2))


def _gram_form_is_cheaper(n, cs, ct) -> bool:
    """N^2 (Cs + Ct) multiply-adds for the N x N matrices vs N (Cs^2 + Ct^2 + Cs Ct) for the Gram form."""
    if None in (n, cs, ct):
        return True
    return n * (cs + ct) > cs * cs + ct * ct + cs * ct


def feature_similarity_loss(student_feat, teacher_feat, pool_size: int | None = None, normalize: bool = False):
    """FSD: MSE between the student's and teacher's cosine-similarity matrices.

    Differences from the authors' PyTorch code (which divides the dot products
    by ``|a| |b| + 1e-9``): vectors are L2-normalised first, with their norm
    floored at 1e-6. Values agree to ~1e-9 except for near-zero vectors, and
    the gradient stays finite at all-zero (dead-ReLU) positions, where
    ``d|a|/da`` is 0/0. No softmax is applied (the paper's plain cosine graph).

    Args:
        student_feat: [B, H, W, C_s], the student's raw features (no adaptor).
        teacher_feat: [B, H, W, C_t], same H and W.
        pool_size: Optional average pooling of both maps before building the
            matrices; the matrix memory falls by pool_size**4 (a 64x64 map
            gives a 4096 x 4096 matrix per image without it).
        normalize: Divide by the mean square of the teacher's matrix (no
            gradient through it), as the relative FAD does: the term then
            reads as "fraction of the teacher's structure missed", ~1 at init.

    Returns:
        Scalar float32, the mean over all B * N * N entries.
    """
    return ops.mean(feature_similarity_per_item(student_feat, teacher_feat, pool_size, normalize))


def feature_similarity_per_item(student_feat, teacher_feat, pool_size: int | None = None, normalize: bool = False):
    """`feature_similarity_loss` per image: [B] float32 (see there).

    With S = U U^T (U [N, C] the unit vectors), the sum of squares of S_s - S_t
    equals |U_s^T U_s|^2 - 2 |U_s^T U_t|^2 + |U_t^T U_t|^2 (Frobenius norms of
    C x C matrices, as tr(AB) = tr(BA)). When the channels are fewer than the
    positions this form is used: the same value without ever building an
    N x N matrix (a 64 x 64 stage gives 4096 x 4096 per image, 1 GB for a
    batch of 16; here 128 x 128). Otherwise the matrices are built.
    """
    us, ut = _unit_vectors(student_feat, pool_size), _unit_vectors(teacher_feat, pool_size)
    n = us.shape[1]
    if _gram_form_is_cheaper(n, us.shape[2], ut.shape[2]):
        count = ops.cast(ops.shape(us)[1], "float32") ** 2
        ss = _sum_sq(ops.matmul(ops.transpose(us, (0, 2, 1)), us))
        tt = _sum_sq(ops.matmul(ops.transpose(ut, (0, 2, 1)), ut))
        st = _sum_sq(ops.matmul(ops.transpose(us, (0, 2, 1)), ut))
        # Rounding can leave a tiny negative where the two structures agree: a sum of squares is >= 0.
        per_item = ops.maximum(ss - 2.0 * st + tt, 0.0) / count
        teacher_sq = tt / count  # mean square of the teacher's matrix, per image
    else:
        gs = ops.matmul(us, ops.transpose(us, (0, 2, 1)))
        gt = ops.matmul(ut, ops.transpose(ut, (0, 2, 1)))
        per_item = ops.mean(ops.square(gs - gt), axis=(1, 2))
        teacher_sq = ops.mean(ops.square(gt), axis=(1, 2))
    if normalize:
        per_item = per_item / (ops.stop_gradient(ops.mean(teacher_sq)) + 1e-8)
    return per_item


def feature_aligned_per_item(student_feat_adapted, teacher_feat, normalize: bool = False):
    """`feature_aligned_loss` per image: [B] float32 (the normaliser is the batch's, as there)."""
    s = ops.cast(student_feat_adapted, "float32")
    t = ops.cast(teacher_feat, "float32")
    per_item = ops.mean(ops.square(s - t), axis=(1, 2, 3))
    if normalize:
        per_item = per_item / (ops.stop_gradient(ops.mean(ops.square(t))) + 1e-8)
    return per_item


def match_resolution(feat, factor: int):
    """Average-pools a teacher map by an integer factor onto the student's grid.

    In pixel-centre coordinates, student cell j covers teacher cells
    r*j .. r*j + r - 1, whose mean sits at the student cell's centre, so no
    half-pixel shift is introduced.

    Args:
        feat: [B, r*H, r*W, C].
        factor: r >= 1 (1 returns `feat` unchanged).

    Returns:
        [B, H, W, C] float32.
    """
    feat = ops.cast(feat, "float32")
    if factor == 1:
        return feat
    return ops.average_pool(feat, factor, factor, "valid")


def _gaussian_kernel_1d(sigma: float) -> list[float]:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    weights = [math.exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(-radius, radius + 1)]
    total = sum(weights)
    return [w / total for w in weights]


def soft_heatmap_targets(teacher_heatmaps, factor: int, sigma: float = 1.0):
    """Teacher heatmaps on the student's grid, as soft targets of the KD loss.

    A teacher trained with Gaussians of `sigma` teacher-heatmap pixels puts
    sigma / r *student* pixels around each point, sharper than the student's
    own targets (sigma student pixels). The map is blurred by the Gaussian
    that makes up the difference, then `match_resolution` pooled, then scaled
    by r**2 so that an ideal teacher (its exact Gaussians) becomes the
    student's ground-truth Gaussians, peak 1: variances add as
    sigma**2 + blur**2 + (r**2 - 1) / 12 (the r x r box) = (r * sigma)**2.
    The map is linear in the teacher's output, so a less confident (lower,
    wider) teacher peak stays lower and wider.

    Args:
        teacher_heatmaps: [B, r*Hm, r*Hm, K].
        factor: r, teacher heatmap size / student heatmap size.
        sigma: The Gaussian sigma both models were trained with, in their
            own heatmap pixels.

    Returns:
        [B, Hm, Hm, K] float32 (unchanged maps when r == 1).
    """
    maps = ops.cast(teacher_heatmaps, "float32")
    if factor == 1:
        return maps
    blur_var = (factor * sigma) ** 2 - sigma**2 - (factor**2 - 1) / 12.0
    if blur_var > 1e-6:
        k = ops.convert_to_tensor(_gaussian_kernel_1d(math.sqrt(blur_var)), "float32")
        channels = maps.shape[-1]
        kx = ops.tile(ops.reshape(k, (1, -1, 1, 1)), (1, 1, channels, 1))
        ky = ops.tile(ops.reshape(k, (-1, 1, 1, 1)), (1, 1, channels, 1))
        maps = ops.depthwise_conv(ops.depthwise_conv(maps, kx, 1, "same"), ky, 1, "same")
    return match_resolution(maps, factor) * float(factor**2)


def heatmap_mse_per_item(target, pred):
    """Mean squared error per image, [B] float32, of [B, H, W, K] maps."""
    diff = ops.cast(pred, "float32") - ops.cast(target, "float32")
    return ops.mean(ops.square(diff), axis=(1, 2, 3))


def weighted_mean(values, weights):
    """sum(w * v) / max(sum(w), 1e-6): a mean over the items with weight > 0 (0 if none)."""
    return ops.sum(values * weights) / ops.maximum(ops.sum(weights), 1e-6)


def make_adaptor(in_ch: int, out_ch: int, name: str) -> keras.Sequential:
    """The FAD adaptor: 1x1 conv (no bias) -> BatchNorm -> ReLU.

    Args:
        in_ch: Student channels C_s.
        out_ch: Teacher channels C_t.
        name: Layer-name prefix, e.g. ``"adaptor_feat1"``.

    Returns:
        A built `keras.Sequential` mapping [B, H, W, C_s] -> [B, H, W, C_t].
    """
    adaptor = keras.Sequential(
        [
            keras.layers.Conv2D(out_ch, 1, use_bias=False, name=f"{name}_conv"),
            keras.layers.BatchNormalization(epsilon=1e-5, name=f"{name}_bn"),
            keras.layers.ReLU(name=f"{name}_relu"),
        ],
        name=name,
    )
    adaptor.build((None, None, None, in_ch))
    return adaptor


def distillation_terms(
    student_out: dict,
    teacher_out: dict,
    heatmaps,
    label_weight,
    adaptors: dict,
    stages,
    factor: int = 1,
    fa_weight: float = 0.0,
    fs_weight: float = 0.0,
    kd_weight: float = 0.0,
    ramp=1.0,
    fs_pool_size: int | None = None,
    fa_normalize: bool = True,
    fs_normalize: bool = False,
    sigma: float = 1.0,
    training: bool = False,
) -> dict:
    """Every loss term of one distillation batch (the `Distiller`'s loss, any backend).

    ``loss = heatmap + ramp * (fa_weight * FAD + fs_weight * FSD + kd_weight * KD)``

    * heatmap: MSE to the ground-truth heatmaps, averaged over the *labelled*
      items only (``label_weight`` 1; unlabelled items carry 0 and all-zero maps).
    * FAD, FSD: summed over `stages`, every item (labelled or not), teacher
      features pooled onto the student's grid by `factor`.
    * KD: MSE to `soft_heatmap_targets` of the teacher's heatmaps, every item.

    A term whose weight is 0 is not computed (it reads 0).

    Args:
        student_out: The student's ``feature_extractor`` dict: ``heatmaps``
            [B, Hm, Hm, K] and ``feat1``..``feat3`` [B, h, w, C_s].
        teacher_out: The teacher's dict (r times the resolution), or None
            when every teacher weight is 0.
        heatmaps: [B, Hm, Hm, K] ground truth.
        label_weight: [B] float, 1 for labelled items, 0 for unlabelled ones.
        adaptors: Stage name -> FAD adaptor (C_s -> C_t).
        stages: The distilled feature stages.
        factor: r = teacher resolution / student resolution (integer).
        fa_weight, fs_weight, kd_weight: The three terms' weights.
        ramp: Scalar in [0, 1] multiplying every teacher term (warm-up).
        fs_pool_size: Extra pooling before FSD (on the student's grid).
        fa_normalize, fs_normalize: Relative FAD / FSD (see their functions).
        sigma: Heatmap Gaussian sigma (for the KD targets).
        training: Adaptor BatchNorm mode.

    Returns:
        Dict of float32 scalars ``loss``, ``heatmap_loss``, ``fa_loss``,
        ``fs_loss``, ``kd_loss`` (the last three unweighted).
    """
    label_weight = ops.cast(ops.reshape(label_weight, (-1,)), "float32")
    ones = ops.ones_like(label_weight)
    hm = weighted_mean(heatmap_mse_per_item(heatmaps, student_out["heatmaps"]), label_weight)
    zero = ops.convert_to_tensor(0.0, "float32")
    fa, fs, kd = zero, zero, zero
    for s in stages if (fa_weight or fs_weight) else ():
        t_feat = ops.stop_gradient(match_resolution(teacher_out[s], factor))
        if fa_weight:
            adapted = adaptors[s](student_out[s], training=training)
            fa = fa + weighted_mean(feature_aligned_per_item(adapted, t_feat, fa_normalize), ones)
        if fs_weight:
            fs = fs + weighted_mean(feature_similarity_per_item(student_out[s], t_feat, fs_pool_size, fs_normalize), ones)
    if kd_weight:
        target = ops.stop_gradient(soft_heatmap_targets(teacher_out["heatmaps"], factor, sigma))
        kd = weighted_mean(heatmap_mse_per_item(target, student_out["heatmaps"]), ones)
    total = hm + ramp * (fa_weight * fa + fs_weight * fs + kd_weight * kd)
    return {"loss": total, "heatmap_loss": hm, "fa_loss": fa, "fs_loss": fs, "kd_loss": kd}
