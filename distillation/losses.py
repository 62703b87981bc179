"""MobileFAN's two distillation losses and the feature adaptor (any Keras backend).

Feature-aligned distillation (FAD) matches the student's features, mapped to
the teacher's channels by a small adaptor, to the teacher's features by MSE.
Feature-similarity distillation (FSD) matches the *structure* of the two
feature maps: for each, the N x N matrix (N = H * W) of cosine similarities
between the feature vectors at every pair of spatial positions; the two
matrices are compared by MSE. FSD needs no adaptor (the matrices are N x N
whatever the channel counts), so it uses the student's raw features.
"""

from __future__ import annotations

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
    s = ops.cast(student_feat_adapted, "float32")
    t = ops.cast(teacher_feat, "float32")
    mse = ops.mean(ops.square(s - t))
    if normalize:
        mse = mse / (ops.stop_gradient(ops.mean(ops.square(t))) + 1e-8)
    return mse


def cosine_similarity_matrix(feat, pool_size: int | None = None):
    """Cosine similarity between the feature vectors at every pair of positions.

    Args:
        feat: [B, H, W, C] feature map.
        pool_size: Optional average-pooling window (and stride) applied first;
            H and W must be divisible by it.

    Returns:
        [B, N, N] float32 with N = H * W (after pooling), entries in [-1, 1].
    """
    feat = ops.cast(feat, "float32")
    if pool_size and pool_size > 1:
        h, w = feat.shape[1], feat.shape[2]
        if (h is not None and h % pool_size) or (w is not None and w % pool_size):
            raise ValueError(f"fs_pool_size {pool_size} does not divide the {h}x{w} feature map")
        feat = ops.average_pool(feat, pool_size, pool_size, "valid")
    shape = ops.shape(feat)
    flat = ops.reshape(feat, (shape[0], shape[1] * shape[2], shape[3]))  # [B, N, C]
    # x / max(|x|, 1e-6), written out so every Keras backend floors the norm the same way.
    unit = flat * ops.rsqrt(ops.maximum(ops.sum(ops.square(flat), axis=-1, keepdims=True), NORM_EPS))
    return ops.matmul(unit, ops.transpose(unit, (0, 2, 1)))


def feature_similarity_loss(student_feat, teacher_feat, pool_size: int | None = None):
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

    Returns:
        Scalar float32, the mean over all B * N * N entries.
    """
    gs = cosine_similarity_matrix(student_feat, pool_size)
    gt = cosine_similarity_matrix(teacher_feat, pool_size)
    return ops.mean(ops.square(gs - gt))


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
