"""Gaussian heatmap encoding and sub-pixel decoding, in TensorFlow.

Coordinate frame (used everywhere in this package): landmarks are (x, y) in
0-based *pixel-centre* coordinates, i.e. the centre of the pixel in row i,
column j is (x=j, y=i); the image's left edge is x=-0.5. A heatmap with
stride s = input_size / heatmap_size covers the same area, so

    heatmap_xy = (input_xy + 0.5) / s - 0.5,
    input_xy   = (heatmap_xy + 0.5) * s - 0.5.

Everything here is vectorised TF (no Python loops over points), so decoding
can live inside an exported SavedModel or TFLite graph.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def input_to_heatmap(xy, stride: float):
    """Maps input-pixel coordinates to heatmap-pixel coordinates."""
    return (xy + 0.5) / stride - 0.5


def heatmap_to_input(xy, stride: float):
    """Maps heatmap-pixel coordinates to input-pixel coordinates."""
    return (xy + 0.5) * stride - 0.5


def encode_heatmaps(landmarks, heatmap_size: int, sigma: float = 1.0):
    """Renders one unnormalised Gaussian (peak 1) per landmark.

    The centre is the exact sub-pixel position (no rounding), so decoding can
    recover it to a small fraction of a pixel.

    Args:
        landmarks: [..., K, 2] float, (x, y) in heatmap pixels.
        heatmap_size: H = W of the output.
        sigma: Gaussian standard deviation in heatmap pixels.

    Returns:
        [..., H, W, K] float32 heatmaps. Points with non-finite coordinates
        give an all-zero map.
    """
    landmarks = tf.convert_to_tensor(landmarks, tf.float32)
    grid = tf.range(heatmap_size, dtype=tf.float32)
    x = landmarks[..., 0][..., None]  # [..., K, 1]
    y = landmarks[..., 1][..., None]
    gx = tf.exp(-tf.square(grid - x) / (2.0 * sigma**2))  # [..., K, W]
    gy = tf.exp(-tf.square(grid - y) / (2.0 * sigma**2))  # [..., K, H]
    # Separable Gaussian: outer product of the two 1-D profiles.
    maps = gy[..., :, None] * gx[..., None, :]  # [..., K, H, W]
    maps = tf.where(tf.math.is_finite(maps), maps, tf.zeros_like(maps))
    rank = len(maps.shape)
    perm = list(range(rank - 3)) + [rank - 2, rank - 1, rank - 3]
    return tf.transpose(maps, perm)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3 * sigma)))
    r = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(heatmaps, sigma: float):
    """Separable Gaussian blur of each channel of [B, H, W, K] maps."""
    k = _gaussian_kernel(sigma)
    channels = heatmaps.shape[-1]
    kx = tf.constant(np.tile(k[None, :, None, None], (1, 1, channels, 1)))
    ky = tf.constant(np.tile(k[:, None, None, None], (1, 1, channels, 1)))
    out = tf.nn.depthwise_conv2d(heatmaps, kx, [1, 1, 1, 1], "SAME")
    return tf.nn.depthwise_conv2d(out, ky, [1, 1, 1, 1], "SAME")


def decode_heatmaps(heatmaps, method: str = "dark", blur_sigma: float | None = 1.0):
    """Finds each landmark's sub-pixel position in its heatmap.

    Args:
        heatmaps: [B, H, W, K] float heatmaps.
        method: ``"argmax"`` (integer peak), ``"quarter"`` (peak moved a
            quarter pixel towards the higher neighbour, as in Hourglass/SimpleBaseline)
            or ``"dark"`` (a Newton step on the log-heatmap around the peak,
            Zhang et al. 2020, exact for a Gaussian).
        blur_sigma: For ``"dark"``: Gaussian smoothing (heatmap pixels) applied
            before the Taylor step, which makes noisy predictions closer to a
            Gaussian; None to skip. Blurring a Gaussian keeps its centre.

    Returns:
        coords: [B, K, 2] float32 (x, y) in heatmap pixels.
        scores: [B, K] float32 peak values of the raw heatmaps.
    """
    if method not in ("argmax", "quarter", "dark"):
        raise ValueError(f"Unknown decode method {method!r}: use argmax, quarter or dark")
    heatmaps = tf.convert_to_tensor(heatmaps, tf.float32)
    if heatmaps.shape.rank != 4:
        raise ValueError(f"heatmaps must be [B, H, W, K], got shape {heatmaps.shape}")
    height, width, k = heatmaps.shape[1], heatmaps.shape[2], heatmaps.shape[3]
    maps = tf.transpose(heatmaps, [0, 3, 1, 2])  # [B, K, H, W]
    flat = tf.reshape(maps, [-1, k, height * width])
    idx = tf.argmax(flat, axis=-1, output_type=tf.int32)  # [B, K]
    scores = tf.reduce_max(flat, axis=-1)
    iy = idx // width
    ix = idx - iy * width
    coords = tf.cast(tf.stack([ix, iy], axis=-1), tf.float32)
    if method == "argmax":
        return coords, scores
    if method == "dark":
        # Expand around the nearest interior pixel, so a peak on the border
        # still has a full 3x3 neighbourhood (the log of a Gaussian is
        # quadratic everywhere, so the Newton step stays exact).
        ix = tf.clip_by_value(ix, 1, width - 2)
        iy = tf.clip_by_value(iy, 1, height - 2)
        coords = tf.cast(tf.stack([ix, iy], axis=-1), tf.float32)

    src = _blur(heatmaps, blur_sigma) if (method == "dark" and blur_sigma) else heatmaps
    # Pad by one pixel (edge values) so the 3x3 neighbourhood always exists.
    padded = tf.pad(tf.transpose(src, [0, 3, 1, 2]), [[0, 0], [0, 0], [1, 1], [1, 1]], "SYMMETRIC")
    pflat = tf.reshape(padded, [-1, k, (height + 2) * (width + 2)])

    def at(dx: int, dy: int):
        j = (iy + 1 + dy) * (width + 2) + (ix + 1 + dx)
        return tf.gather(pflat, j[..., None], batch_dims=2)[..., 0]

    if method == "quarter":
        dx = tf.sign(at(1, 0) - at(-1, 0)) * 0.25
        dy = tf.sign(at(0, 1) - at(0, -1)) * 0.25
        return coords + tf.stack([dx, dy], axis=-1), scores

    def logv(dx: int, dy: int):
        return tf.math.log(tf.maximum(at(dx, dy), 1e-10))

    c = logv(0, 0)
    gx = 0.5 * (logv(1, 0) - logv(-1, 0))
    gy = 0.5 * (logv(0, 1) - logv(0, -1))
    hxx = logv(1, 0) - 2.0 * c + logv(-1, 0)
    hyy = logv(0, 1) - 2.0 * c + logv(0, -1)
    hxy = 0.25 * (logv(1, 1) - logv(1, -1) - logv(-1, 1) + logv(-1, -1))
    det = hxx * hyy - hxy * hxy
    # Newton step -H^-1 g, only where the log-map is concave (a real peak).
    ok = (det > 1e-6) & (hxx < 0.0)
    safe_det = tf.where(ok, det, tf.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / safe_det
    oy = -(hxx * gy - hxy * gx) / safe_det
    offset = tf.clip_by_value(tf.stack([ox, oy], axis=-1), -1.5, 1.5)
    offset = tf.where(ok[..., None], offset, tf.zeros_like(offset))
    return coords + offset, scores


def decode_to_input(heatmaps, input_size: int, method: str = "dark", blur_sigma: float | None = 1.0):
    """`decode_heatmaps`, with coordinates mapped to input pixels.

    Returns:
        landmarks: [B, K, 2] (x, y) in input pixels; scores: [B, K].
    """
    coords, scores = decode_heatmaps(heatmaps, method=method, blur_sigma=blur_sigma)
    stride = input_size / heatmaps.shape[1]
    return heatmap_to_input(coords, stride), scores
