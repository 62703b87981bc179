"""Gaussian heatmap encoding and sub-pixel decoding, written once in `keras.ops`.

Coordinate frame (used everywhere in this package): landmarks are (x, y) in
0-based *pixel-centre* coordinates, i.e. the centre of the pixel in row i,
column j is (x=j, y=i); the image's left edge is x=-0.5. A heatmap with
stride s = input_size / heatmap_size covers the same area, so

    heatmap_xy = (input_xy + 0.5) / s - 0.5,
    input_xy   = (heatmap_xy + 0.5) * s - 0.5.

Everything here is vectorised `keras.ops` (no Python loops over points), so
it runs on every Keras backend, and on TensorFlow it can live inside an
exported SavedModel or TFLite graph or a tf.data map function. ``ops``
selects the implementation (see `mobilefan_tf.ops`): None for the active
backend, `mobilefan_tf.ops.tf_ops()` for TensorFlow graphs under any backend.
"""

from __future__ import annotations

import math

import numpy as np

from mobilefan_tf.ops import resolve

# DARK's default smoothing: a Gaussian of sigma 1.5 heatmap pixels, cut at 2 sigma (radius 3, 7 taps):
# the same window, hence the same cost, as the former default (sigma 1.0 cut at 3 sigma). Measured on
# the 201 validation faces (MODEL_CARD.md, "Heatmap decoding"): the lite model's NME 3.70 -> 3.68 % one
# pass, the default's 3.24 -> 3.23 %; the curve is flat from sigma 1.25 to 2.0, cutting at 2 sigma
# costs nothing measurable, and choosing sigma on one half of the faces gives the same gain on the other.
DEFAULT_BLUR_SIGMA = 1.5


def input_to_heatmap(xy, stride: float):
    """Maps input-pixel coordinates to heatmap-pixel coordinates."""
    return (xy + 0.5) / stride - 0.5


def heatmap_to_input(xy, stride: float):
    """Maps heatmap-pixel coordinates to input-pixel coordinates."""
    return (xy + 0.5) * stride - 0.5


def encode_heatmaps(landmarks, heatmap_size: int, sigma: float = 1.0, ops=None):
    """Renders one unnormalised Gaussian (peak 1) per landmark.

    The centre is the exact sub-pixel position (no rounding), so decoding can
    recover it to a small fraction of a pixel.

    Args:
        landmarks: [..., K, 2] float, (x, y) in heatmap pixels.
        heatmap_size: H = W of the output.
        sigma: Gaussian standard deviation in heatmap pixels.
        ops: keras.ops implementation (None: the active backend).

    Returns:
        [..., H, W, K] float32 heatmaps. Points with non-finite coordinates
        give an all-zero map.
    """
    ops = resolve(ops)
    landmarks = ops.cast(ops.convert_to_tensor(landmarks), "float32")
    grid = ops.arange(heatmap_size, dtype="float32")
    x = ops.expand_dims(landmarks[..., 0], -1)  # [..., K, 1]
    y = ops.expand_dims(landmarks[..., 1], -1)
    gx = ops.exp(-ops.square(grid - x) / (2.0 * sigma**2))  # [..., K, W]
    gy = ops.exp(-ops.square(grid - y) / (2.0 * sigma**2))  # [..., K, H]
    # Separable Gaussian: outer product of the two 1-D profiles.
    maps = ops.expand_dims(gy, -1) * ops.expand_dims(gx, -2)  # [..., K, H, W]
    maps = ops.where(ops.isfinite(maps), maps, ops.zeros_like(maps))
    rank = len(maps.shape)
    perm = list(range(rank - 3)) + [rank - 2, rank - 1, rank - 3]
    return ops.transpose(maps, perm)


def _gaussian_kernel(sigma: float, radius: int | None = None) -> np.ndarray:
    """Normalised 1-D Gaussian of 2 * radius + 1 taps (radius None: ceil(2 sigma))."""
    radius = max(1, int(math.ceil(2 * sigma))) if radius is None else int(radius)
    r = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _window_weights(sigma: float | None, radius: int | None = None) -> tuple[int, np.ndarray]:
    """(R, M): M [9, (2R + 1) ** 2] maps a (2R+1)^2 window around a pixel to the blurred 3x3 around it.

    Row dy * 3 + dx of M is the separable Gaussian (`_gaussian_kernel`) centred on window pixel
    (R - 1 + dy, R - 1 + dx); with no blur (sigma None) it selects that pixel (R = 1).
    """
    k = _gaussian_kernel(sigma, radius) if sigma else np.ones(1, np.float32)
    radius = len(k) // 2
    side = 2 * radius + 3
    one_d = np.zeros((3, side), np.float32)  # [d, window coord]: the kernel centred on window pixel radius + d
    for d in range(3):
        one_d[d, d : d + len(k)] = k
    weights = np.einsum("ay,bx->abyx", one_d, one_d).reshape(9, side * side)
    return radius + 1, weights


def _argmax_axis1(x, ops):
    """int32 argmax over axis 1. On TensorFlow `tf.argmax` itself: keras' TF argmax checks
    for -0.0 with a BitwiseAnd, which TFLite cannot run (exported graphs decode with this)."""
    import keras

    if ops is not keras.ops or keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.argmax(x, axis=1, output_type=tf.int32)
    return ops.cast(ops.argmax(x, axis=1), "int32")


def decode_heatmaps(
    heatmaps,
    method: str = "dark",
    blur_sigma: float | None = DEFAULT_BLUR_SIGMA,
    blur_radius: int | None = None,
    ops=None,
):
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
        blur_radius: Half-width of that blur's kernel in heatmap pixels
            (None: ceil(2 * blur_sigma)). It sets the cost: the decoder reads a
            (2 * radius + 3)^2 window around each peak.
        ops: keras.ops implementation (None: the active backend).

    Returns:
        coords: [B, K, 2] float32 (x, y) in heatmap pixels.
        scores: [B, K] float32 peak values of the raw heatmaps.
    """
    if method not in ("argmax", "quarter", "dark"):
        raise ValueError(f"Unknown decode method {method!r}: use argmax, quarter or dark")
    if blur_radius is not None and int(blur_radius) < 1:
        raise ValueError(f"blur_radius must be a whole number of heatmap pixels >= 1 (or None), got {blur_radius!r}")
    ops = resolve(ops)
    heatmaps = ops.cast(ops.convert_to_tensor(heatmaps), "float32")
    if len(heatmaps.shape) != 4:
        raise ValueError(f"heatmaps must be [B, H, W, K], got shape {tuple(heatmaps.shape)}")
    height, width, k = heatmaps.shape[1], heatmaps.shape[2], heatmaps.shape[3]
    flat = ops.reshape(heatmaps, [-1, height * width, k])  # no transpose: reduce over axis 1
    idx = _argmax_axis1(flat, ops)  # [B, K]
    scores = ops.max(flat, axis=1)
    iy = idx // width
    ix = idx - iy * width
    coords = ops.cast(ops.stack([ix, iy], axis=-1), "float32")
    if method == "argmax":
        return coords, scores

    if method == "quarter":
        # Neighbours clamped to the map: a border peak compares with itself (edge padding).
        def at(dx: int, dy: int):
            j = ops.clip(iy + dy, 0, height - 1) * width + ops.clip(ix + dx, 0, width - 1)
            return ops.take_along_axis(flat, ops.expand_dims(j, 1), axis=1)[:, 0]

        dx = ops.sign(at(1, 0) - at(-1, 0)) * 0.25
        dy = ops.sign(at(0, 1) - at(0, -1)) * 0.25
        return coords + ops.stack([dx, dy], axis=-1), scores

    # DARK. Expand around the nearest interior pixel, so a peak on the border still has a full
    # 3x3 neighbourhood (the log of a Gaussian is quadratic everywhere, so the Newton step stays exact).
    ix = ops.clip(ix, 1, width - 2)
    iy = ops.clip(iy, 1, height - 2)
    coords = ops.cast(ops.stack([ix, iy], axis=-1), "float32")
    # Only the blurred 3x3 around each peak is used, so only that is computed: the (2R+1)^2 raw
    # window around the peak (zeros outside the map, as a "same" zero-padded blur sees it) times
    # a fixed [9, (2R+1)^2] matrix of Gaussian weights. Same values as blurring whole maps, at a
    # fraction of the cost (the whole-map blur, transposes and pads were ~40 % of the lite TFLite
    # model's time on a CPU).
    pad, weights = _window_weights(blur_sigma, blur_radius)
    padded = ops.pad(heatmaps, [[0, 0], [pad, pad], [pad, pad], [0, 0]])  # zeros
    pw = width + 2 * pad
    pflat = ops.reshape(padded, [-1, (height + 2 * pad) * pw, k])
    offsets = np.array([(oy * pw + ox) for oy in range(-pad, pad + 1) for ox in range(-pad, pad + 1)], np.int32)
    centre = ops.expand_dims((iy + pad) * pw + ix + pad, 1)  # [B, 1, K]
    window = ops.take_along_axis(pflat, centre + ops.convert_to_tensor(offsets[None, :, None]), axis=1)  # [B, M, K]
    near = ops.einsum("nm,bmk->bnk", ops.convert_to_tensor(weights), window)  # [B, 9, K], row dy * 3 + dx

    def at(dx: int, dy: int):
        return near[:, (dy + 1) * 3 + dx + 1]

    def logv(dx: int, dy: int):
        return ops.log(ops.maximum(at(dx, dy), 1e-10))

    c = logv(0, 0)
    gx = 0.5 * (logv(1, 0) - logv(-1, 0))
    gy = 0.5 * (logv(0, 1) - logv(0, -1))
    hxx = logv(1, 0) - 2.0 * c + logv(-1, 0)
    hyy = logv(0, 1) - 2.0 * c + logv(0, -1)
    hxy = 0.25 * (logv(1, 1) - logv(1, -1) - logv(-1, 1) + logv(-1, -1))
    det = hxx * hyy - hxy * hxy
    # Newton step -H^-1 g, only where the log-map is concave (a real peak).
    ok = ops.logical_and(det > 1e-6, hxx < 0.0)  # not `&`: that is BitwiseAnd, which TFLite lacks
    safe_det = ops.where(ok, det, ops.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / safe_det
    oy = -(hxx * gy - hxy * gx) / safe_det
    offset = ops.clip(ops.stack([ox, oy], axis=-1), -1.5, 1.5)
    offset = ops.where(ops.expand_dims(ok, -1), offset, ops.zeros_like(offset))
    return coords + offset, scores


def decode_to_input(
    heatmaps,
    input_size: int,
    method: str = "dark",
    blur_sigma: float | None = DEFAULT_BLUR_SIGMA,
    blur_radius: int | None = None,
    ops=None,
):
    """`decode_heatmaps`, with coordinates mapped to input pixels.

    Returns:
        landmarks: [B, K, 2] (x, y) in input pixels; scores: [B, K].
    """
    coords, scores = decode_heatmaps(heatmaps, method=method, blur_sigma=blur_sigma, blur_radius=blur_radius, ops=ops)
    stride = input_size / heatmaps.shape[1]
    return heatmap_to_input(coords, stride), scores
