"""Random augmentation: a fixed-length vector of uniform draws, applied in `keras.ops`.

The augmentation is split in two halves so that every backend gets the same
faces:

* **draw**: each face gets `NUM_DRAWS` numbers uniform in [0, 1) (the
  layout is the ``DRAW_*`` indices below). The tf.data pipeline draws them
  with `tf.random.stateless_uniform` (`tf_draws`), the NumPy feeder
  (`mobilefan_tf.data.feeder`) with a NumPy generator. Nothing else is random.
* **apply** (`augment_batch`): written once in `keras.ops`, it maps the
  draws to one affine (crop + rotation + scale + shift + flip, pixels
  resampled once), warps, and applies occlusion, colour jitter and blur to
  float32 images in 0..255. It runs on the active backend (``ops=None``), or
  on TensorFlow inside tf.data under any backend (``ops=tf_ops()``, see
  `mobilefan_tf.ops`). The same draws give the same images and landmarks on
  every backend (tested).

Geometry lives in a size-independent *unit frame* of the crop: an input
pixel centre u of an S-pixel crop is at v = (u + 0.5) / S, so the crop spans
[0, 1] whatever S is. One set of draws defines one affine in that frame, and
`augment_batch` warps it to several output sizes at once (e.g. a 64-pixel
student input and a 256-pixel teacher input showing the same augmented
face). Photometric changes are defined in the same frame (occlusion
rectangle as fractions of the side, blur sigma in pixels of the first size,
scaled for the others).

All matrices are homogeneous [3, 3] (or [B, 3, 3]) affines in 0-based
pixel-centre coordinates (see `mobilefan_tf.heatmaps`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mobilefan_tf.data.config import AugmentConfig
from mobilefan_tf.ops import resolve, tf_ops

__all__ = [
    "NUM_DRAWS", "AugmentConfig", "augment_batch", "augmentation_affine", "photometric", "photometric_batch",
    "random_affine", "tf_draws", "warp_image", "warp_images",
]

# Layout of the draw vector (one row per face), each uniform in [0, 1).
(DRAW_ROTATE, DRAW_ANGLE, DRAW_SCALE, DRAW_SHIFT_X, DRAW_SHIFT_Y, DRAW_FLIP,
 DRAW_OCCLUDE, DRAW_OCCLUSION_W, DRAW_OCCLUSION_H, DRAW_OCCLUSION_X, DRAW_OCCLUSION_Y,
 DRAW_RED, DRAW_GREEN, DRAW_BLUE, DRAW_BRIGHTNESS, DRAW_CONTRAST, DRAW_SATURATION,
 DRAW_BLUR, DRAW_BLUR_SIGMA) = range(19)
NUM_DRAWS = 19


def _between(u, lo_hi):
    return lo_hi[0] + u * (lo_hi[1] - lo_hi[0])


def to_unit(size: int) -> np.ndarray:
    """[3, 3]: pixel centres of an S-pixel crop -> the unit frame ((u + 0.5) / S)."""
    return np.array([[1 / size, 0, 0.5 / size], [0, 1 / size, 0.5 / size], [0, 0, 1]], np.float32)


def from_unit(size: int) -> np.ndarray:
    """[3, 3]: the unit frame -> pixel centres of an S-pixel crop (inverse of `to_unit`)."""
    return np.array([[size, 0, -0.5], [0, size, -0.5], [0, 0, 1]], np.float32)


def _rows_to_matrix(a, b, c, d, e, f, ops):
    """[B, 3, 3] affines with top rows (a, b, c) and (d, e, f), each [B]."""
    zero = ops.zeros_like(a)
    return ops.stack([ops.stack([a, b, c], -1), ops.stack([d, e, f], -1), ops.stack([zero, zero, zero + 1.0], -1)], -2)


def augmentation_affine(draws, config: AugmentConfig, ops=None):
    """The augmentation affines of a batch, in the unit frame.

    ``v' = c + scale * R(angle) @ (flip(v) - c) + shift``, with c = (0.5, 0.5)
    the crop centre and flip ``v -> 2 c_x - v_x``.

    Args:
        draws: float32 [B, NUM_DRAWS] uniform draws.
        config: Strengths.
        ops: keras.ops implementation (None: the active backend).

    Returns:
        matrices: float32 [B, 3, 3] (unit frame -> augmented unit frame).
        flipped: bool [B]; where true, landmark indices must be permuted.
    """
    ops = resolve(ops)
    u = ops.cast(ops.convert_to_tensor(draws), "float32")
    rotate = u[:, DRAW_ROTATE] < config.rotation_prob
    angle = ops.where(rotate, (2.0 * u[:, DRAW_ANGLE] - 1.0) * config.rotation_deg, 0.0) * (math.pi / 180)
    scale = _between(u[:, DRAW_SCALE], config.scale)
    shift_x = (2.0 * u[:, DRAW_SHIFT_X] - 1.0) * config.translate
    shift_y = (2.0 * u[:, DRAW_SHIFT_Y] - 1.0) * config.translate
    flipped = u[:, DRAW_FLIP] < config.flip_prob
    fx = ops.where(flipped, -1.0, 1.0)
    cos, sin = scale * ops.cos(angle), scale * ops.sin(angle)
    # Linear part L = scale * R @ diag(fx, 1); the translation keeps the centre fixed, then shifts.
    l00, l01, l10, l11 = cos * fx, -sin, sin * fx, cos
    tx = 0.5 - 0.5 * (l00 + l01) + shift_x
    ty = 0.5 - 0.5 * (l10 + l11) + shift_y
    return _rows_to_matrix(l00, l01, tx, l10, l11, ty, ops), flipped


def _invert(matrices, ops):
    """Inverse of [B, 3, 3] affines (closed form: the same arithmetic on every backend)."""
    a, b, c = matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 0, 2]
    d, e, f = matrices[:, 1, 0], matrices[:, 1, 1], matrices[:, 1, 2]
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return _rows_to_matrix(ia, ib, -(ia * c + ib * f), id_, ie, -(id_ * c + ie * f), ops)


def warp_images(images, matrices, size: int, ops=None):
    """Resamples each image so output pixel u shows source pixel ``matrix^-1 u``.

    Bilinear, black outside the source: every one of the four taps that falls
    outside the image reads 0 (as TensorFlow's ``ImageProjectiveTransformV3``
    with constant fill). A batch of different-sized sources can be zero-padded
    at the bottom/right to one size without changing the result.

    Args:
        images: [B, H, W, C] any numeric dtype (H, W may be dynamic in a tf graph).
        matrices: float32 [B, 3, 3] affines, source pixel centres -> output pixel centres.
        size: S, output side.
        ops: keras.ops implementation (None: the active backend).

    Returns:
        float32 [B, S, S, C].
    """
    ops = resolve(ops)
    images = ops.cast(ops.convert_to_tensor(images), "float32")
    inv = _invert(ops.cast(ops.convert_to_tensor(matrices), "float32"), ops)
    shape = ops.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], images.shape[3]
    grid = ops.arange(size, dtype="float32")
    xs, ys = ops.reshape(grid, [1, 1, size]), ops.reshape(grid, [1, size, 1])

    def coef(i: int, j: int):
        return ops.reshape(inv[:, i, j], [-1, 1, 1])

    sx = coef(0, 0) * xs + coef(0, 1) * ys + coef(0, 2)  # [B, S, S] source x of each output pixel
    sy = coef(1, 0) * xs + coef(1, 1) * ys + coef(1, 2)
    x0, y0 = ops.floor(sx), ops.floor(sy)
    fx, fy = ops.expand_dims(sx - x0, -1), ops.expand_dims(sy - y0, -1)
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    flat = ops.reshape(images, [-1, channels])
    base = ops.reshape(ops.arange(batch, dtype="int32") * (height * width), [-1, 1, 1])

    def tap(x, y):
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        index = base + ops.clip(y, 0, height - 1) * width + ops.clip(x, 0, width - 1)
        values = ops.reshape(ops.take(flat, ops.reshape(index, [-1]), axis=0), [-1, size, size, channels])
        return ops.where(ops.expand_dims(inside, -1), values, 0.0)

    top = tap(x0, y0) * (1.0 - fx) + tap(x0 + 1, y0) * fx
    bottom = tap(x0, y0 + 1) * (1.0 - fx) + tap(x0 + 1, y0 + 1) * fx
    return top * (1.0 - fy) + bottom * fy


def photometric_batch(images, draws, config: AugmentConfig, pixel_scale: float = 1.0, ops=None):
    """Occlusion, then colour jitter (clipped to 0..255), then blur, of a batch.

    Args:
        images: float32 [B, S, S, 3] in 0..255 (S static).
        draws: float32 [B, NUM_DRAWS] uniform draws (the same as the geometry's).
        config: Strengths.
        pixel_scale: This size over the first size of `augment_batch` (scales the blur sigma).
        ops: keras.ops implementation (None: the active backend).

    Returns:
        float32 [B, S, S, 3] in 0..255.
    """
    ops = resolve(ops)
    u = ops.cast(ops.convert_to_tensor(draws), "float32")
    size = images.shape[1]

    def per_image(x):  # [B] -> [B, 1, 1, 1]
        return ops.reshape(x, [-1, 1, 1, 1])

    if config.occlusion_prob > 0:
        w, h = _between(u[:, DRAW_OCCLUSION_W], config.occlusion_size), _between(u[:, DRAW_OCCLUSION_H], config.occlusion_size)
        x0, y0 = u[:, DRAW_OCCLUSION_X] * (1.0 - w), u[:, DRAW_OCCLUSION_Y] * (1.0 - h)
        centres = ops.reshape((ops.arange(size, dtype="float32") + 0.5) / size, [1, size])  # unit frame
        col = lambda a: ops.reshape(a, [-1, 1])  # noqa: E731
        in_x = (centres >= col(x0)) & (centres < col(x0 + w))  # [B, S]
        in_y = (centres >= col(y0)) & (centres < col(y0 + h))
        on = per_image(u[:, DRAW_OCCLUDE] < config.occlusion_prob)
        mask = ops.reshape(in_y, [-1, size, 1, 1]) & ops.reshape(in_x, [-1, 1, size, 1]) & on
        colour = ops.reshape(u[:, DRAW_RED:DRAW_BLUE + 1] * 255.0, [-1, 1, 1, 3])
        images = ops.where(mask, colour, images)
    if config.brightness > 0:
        images = images + per_image((2.0 * u[:, DRAW_BRIGHTNESS] - 1.0) * config.brightness * 255.0)
    if config.contrast != (1.0, 1.0):
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        images = (images - mean) * per_image(_between(u[:, DRAW_CONTRAST], config.contrast)) + mean
    if config.saturation != (1.0, 1.0):
        gray = ops.sum(images * np.array([0.299, 0.587, 0.114], np.float32), axis=-1, keepdims=True)
        images = gray + (images - gray) * per_image(_between(u[:, DRAW_SATURATION], config.saturation))
    images = ops.clip(images, 0.0, 255.0)
    if config.blur_prob > 0:
        # Separable Gaussian, a different sigma per image: shifted slices weighted per image.
        sigma = ops.reshape(_between(u[:, DRAW_BLUR_SIGMA], config.blur_sigma) * pixel_scale, [-1, 1])
        radius = max(1, math.ceil(3 * config.blur_sigma[1] * pixel_scale))
        taps = ops.exp(-ops.square(ops.arange(-radius, radius + 1, dtype="float32")) / (2.0 * ops.square(sigma)))
        taps = taps / ops.sum(taps, axis=-1, keepdims=True)  # [B, 2r + 1]
        padded = ops.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="symmetric")
        rows = sum(per_image(taps[:, i]) * padded[:, :, i:i + size] for i in range(2 * radius + 1))
        blurred = sum(per_image(taps[:, i]) * rows[:, i:i + size] for i in range(2 * radius + 1))
        images = ops.where(per_image(u[:, DRAW_BLUR] < config.blur_prob), blurred, images)
    return images


def augment_batch(
    images,
    landmarks,
    crops,
    draws,
    config: AugmentConfig,
    sizes: Sequence[int],
    flip_permutation,
    ops=None,
) -> list[tuple]:
    """Crop + augment a batch of faces, at one or several output sizes.

    Args:
        images: [B, H, W, 3] source images (uint8 or float, 0..255).
        landmarks: float32 [B, K, 2] source pixel centres (NaN: missing point).
        crops: float32 [B, 2, 3] face crops, source pixel centres -> pixel
            centres of a ``sizes[0]`` crop (`mobilefan_tf.data.crop_matrix`).
        draws: float32 [B, NUM_DRAWS] uniform draws (zeros with `AugmentConfig.none()`).
        config: Strengths.
        sizes: Output sides; every size shows the same augmented face.
        flip_permutation: int [K] landmark index permutation of a mirror image.
        ops: keras.ops implementation (None: the active backend).

    Returns:
        One ``(pixels, landmarks)`` per size: float32 [B, S, S, 3] in 0..255
        and float32 [B, K, 2] in that size's pixel centres (indices permuted
        on flips; may fall outside 0..S-1).
    """
    ops = resolve(ops)
    aug, flipped = augmentation_affine(draws, config, ops)
    crops = ops.cast(ops.convert_to_tensor(crops), "float32")
    crops = ops.concatenate([crops, ops.zeros_like(crops[:, :1]) + np.array([0, 0, 1], np.float32)], axis=1)
    unit = ops.matmul(aug, ops.matmul(to_unit(sizes[0])[None], crops))  # source -> augmented unit frame
    landmarks = ops.cast(ops.convert_to_tensor(landmarks), "float32")
    perm = np.asarray(flip_permutation, np.int32)
    out = []
    for size in sizes:
        matrix = ops.matmul(from_unit(size)[None], unit)  # [B, 3, 3] source -> this size's pixels
        pixels = warp_images(images, matrix, size, ops)
        pixels = photometric_batch(pixels, draws, config, size / sizes[0], ops)
        moved = ops.matmul(landmarks, ops.transpose(matrix[:, :2, :2], [0, 2, 1])) + matrix[:, None, :2, 2]
        moved = ops.where(ops.reshape(flipped, [-1, 1, 1]), ops.take(moved, perm, axis=1), moved)
        out.append((pixels, moved))
    return out


# ----------------------------------------------------------------------- TensorFlow draws and wrappers
def tf_draws(seed, batch: int = 1):
    """float32 [batch, NUM_DRAWS] stateless uniform draws from an int [2] seed (TensorFlow)."""
    import tensorflow as tf

    return tf.random.stateless_uniform([batch, NUM_DRAWS], seed, dtype=tf.float32)


def random_affine(config: AugmentConfig, size: int, seed):
    """Draws the augmentation affine of one S x S input image (TensorFlow).

    Returns:
        matrix: float32 [3, 3] homogeneous affine (input pixel centres -> augmented).
        flipped: bool scalar; when true, landmark indices must be permuted.
    """
    ops = tf_ops()
    aug, flipped = augmentation_affine(tf_draws(seed), config, ops)
    return ops.matmul(ops.matmul(from_unit(size), aug[0]), to_unit(size)), flipped[0]


def warp_image(image, matrix, size: int):
    """`warp_images` of one [H, W, C] image with a [3, 3] matrix, on TensorFlow: float32 [S, S, C]."""
    ops = tf_ops()
    return warp_images(ops.expand_dims(image, 0), ops.expand_dims(matrix, 0), size, ops)[0]


def photometric(image, config: AugmentConfig, seed):
    """`photometric_batch` of one float [S, S, 3] image with its own stateless draws (TensorFlow)."""
    ops = tf_ops()
    return photometric_batch(ops.expand_dims(image, 0), tf_draws(seed), config, ops=ops)[0]
