"""Random augmentation, as stateless TensorFlow ops inside `tf.data`.

Geometry is one 2x3 affine in input-pixel-centre coordinates (see
`mobilefan_tf.heatmaps`), composed with the face crop so pixels are resampled
once. Photometric ops (occlusion, colour jitter, blur) act on float32
[S, S, 3] images in 0..255. Every op takes a stateless seed (int [2]), so a
pipeline keyed on (seed, element index) is reproducible.
"""

from __future__ import annotations

import math

import tensorflow as tf

from mobilefan_tf.data.config import AugmentConfig

__all__ = ["AugmentConfig", "blur", "color_jitter", "occlude", "photometric", "random_affine", "warp_image"]


def _uniform(seed, lo: float, hi: float, shape=()):
    return tf.random.stateless_uniform(shape, seed, lo, hi, tf.float32)


def _chance(seed, prob: float):
    return tf.random.stateless_uniform([], seed) < prob


def random_affine(config: AugmentConfig, size: int, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """Draws the augmentation affine of one S x S input image.

    ``u = c + scale * R(angle) @ (flip(x) - c) + shift``, with c the image
    centre and flip ``x -> 2 c_x - x``.

    Args:
        config: Strengths.
        size: S, input size.
        seed: int [2] stateless seed.

    Returns:
        matrix: float32 [3, 3] homogeneous affine (input pixel centres -> augmented).
        flipped: bool scalar; when true, landmark indices must be permuted.
    """
    seeds = tf.random.experimental.stateless_split(seed, 6)
    rotate = _chance(seeds[0], config.rotation_prob)
    angle = tf.where(rotate, _uniform(seeds[1], -config.rotation_deg, config.rotation_deg), 0.0) * (math.pi / 180)
    scale = _uniform(seeds[2], *config.scale) if config.scale[0] != config.scale[1] else tf.constant(config.scale[0])
    shift = _uniform(seeds[3], -config.translate, config.translate, [2]) * size
    flipped = _chance(seeds[4], config.flip_prob)
    c = (size - 1) / 2.0
    fx = tf.where(flipped, -1.0, 1.0)
    cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
    # Linear part L = scale * R @ diag(fx, 1); translation keeps c fixed, then shifts.
    lin = tf.reshape(tf.stack([cos * fx, -sin, sin * fx, cos]), [2, 2])
    t = tf.constant([c, c]) - tf.linalg.matvec(lin, tf.constant([c, c])) + shift
    matrix = tf.concat([tf.concat([lin, t[:, None]], 1), tf.constant([[0.0, 0.0, 1.0]])], 0)
    return matrix, flipped


def warp_image(image, matrix, size: int):
    """Resamples `image` so output pixel u shows input pixel ``matrix^-1 u``.

    Args:
        image: [H, W, C] any numeric dtype.
        matrix: float32 [3, 3] affine, source pixel centres -> output pixel centres.
        size: S, output side.

    Returns:
        float32 [S, S, C], bilinear, black outside the source.
    """
    inv = tf.linalg.inv(matrix)
    transform = tf.concat([tf.reshape(inv[:2], [6]), tf.zeros([2])], 0)[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None], transforms=transform, output_shape=tf.constant([size, size]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )
    return out[0]


def occlude(image, config: AugmentConfig, seed):
    """With probability `occlusion_prob`, fills a random rectangle with a random colour."""
    if config.occlusion_prob <= 0:
        return image
    seeds = tf.random.experimental.stateless_split(seed, 4)
    size = tf.cast(tf.shape(image)[0], tf.float32)
    wh = _uniform(seeds[0], *config.occlusion_size, [2]) * size
    x0y0 = _uniform(seeds[1], 0.0, 1.0, [2]) * (size - wh)
    colour = _uniform(seeds[2], 0.0, 255.0, [3])
    grid = tf.range(size)
    inside_x = (grid >= x0y0[0]) & (grid < x0y0[0] + wh[0])
    inside_y = (grid >= x0y0[1]) & (grid < x0y0[1] + wh[1])
    mask = inside_y[:, None, None] & inside_x[None, :, None] & _chance(seeds[3], config.occlusion_prob)
    return tf.where(mask, colour, image)


def color_jitter(image, config: AugmentConfig, seed):
    """Random brightness, contrast and saturation; output clipped to 0..255."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if config.brightness > 0:
        image = image + _uniform(seeds[0], -config.brightness, config.brightness) * 255.0
    if config.contrast != (1.0, 1.0):
        mean = tf.reduce_mean(image)
        image = (image - mean) * _uniform(seeds[1], *config.contrast) + mean
    if config.saturation != (1.0, 1.0):
        gray = tf.reduce_sum(image * tf.constant([0.299, 0.587, 0.114]), -1, keepdims=True)
        image = gray + (image - gray) * _uniform(seeds[2], *config.saturation)
    return tf.clip_by_value(image, 0.0, 255.0)


def gaussian_blur(image, sigma, radius: int = 4):
    """Separable Gaussian blur of a float [H, W, C] image (sigma: scalar tensor)."""
    r = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-tf.square(r) / (2.0 * tf.square(sigma)))
    k = k / tf.reduce_sum(k)
    channels = image.shape[-1]
    kx = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, channels, 1])
    ky = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, channels, 1])
    x = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], "SYMMETRIC")
    x = tf.nn.depthwise_conv2d(x, kx, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(x, ky, [1, 1, 1, 1], "VALID")[0]


def blur(image, config: AugmentConfig, seed):
    """With probability `blur_prob`, a Gaussian blur of random sigma."""
    if config.blur_prob <= 0:
        return image
    seeds = tf.random.experimental.stateless_split(seed, 2)
    sigma = _uniform(seeds[0], *config.blur_sigma)
    return tf.cond(_chance(seeds[1], config.blur_prob), lambda: gaussian_blur(image, sigma), lambda: image)


def photometric(image, config: AugmentConfig, seed):
    """Occlusion, then colour jitter, then blur."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = occlude(image, config, seeds[0])
    image = color_jitter(image, config, seeds[1])
    return blur(image, config, seeds[2])
