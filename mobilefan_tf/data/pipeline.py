"""`build_dataset`: images + landmarks -> batched (image, heatmaps) tf.data pipeline.

Per element: decode (files) -> [cache] -> crop + augmentation as ONE affine
warp (pixels resampled once, landmarks moved by the same matrix, indices
permuted on flips) -> occlusion, colour jitter, blur. Per batch: Gaussian
heatmaps from `mobilefan_tf.heatmaps.encode_heatmaps`. Randomness is
stateless, keyed on (seed stream, element index), so a seeded pipeline
gives the same batches every time it is built. The seed stream is
positional: element p of the (shuffled, repeated) stream gets the p-th key
of every pass, so ``start=p`` continues an interrupted stream exactly (a
resumed run does not replay the first epoch's shuffle and augmentation).

For cross-resolution distillation (``teacher_input_size``), the one affine
is also rendered at the teacher's size: the teacher sees the *same*
augmented face (same geometry, occlusion and colour draws) r times larger.
Unlabelled faces (``FaceSample.landmarks`` None, ``box`` given) get all-zero
heatmaps and label weight 0 (``with_label_weight``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from mobilefan_tf.data.augment import AugmentConfig, augment_batch, tf_draws
from mobilefan_tf.data.readers import FaceSample, check_image_file, check_landmarks
from mobilefan_tf.data.transforms import crop_matrix, face_box
from mobilefan_tf.heatmaps import encode_heatmaps, input_to_heatmap
from mobilefan_tf.ops import tf_ops
from mobilefan_tf.specs import LandmarkSpec, get_spec


def is_unlabeled(sample: FaceSample) -> bool:
    """True for a face without landmarks (landmarks None or all NaN): only a teacher can supervise it."""
    return sample.landmarks is None or not np.isfinite(np.asarray(sample.landmarks, np.float32)).any()


def _landmarks_of(sample: FaceSample, k: int) -> np.ndarray:
    return np.full((k, 2), np.nan, np.float32) if sample.landmarks is None else np.asarray(sample.landmarks, np.float32)


def _validate(
    samples: Sequence[FaceSample], k: int, skip_bad: bool, allow_unlabeled: bool = False
) -> tuple[list[FaceSample], list[tuple[str, str]]]:
    good, skipped = [], []
    for s in samples:
        where = s.image_path or s.name
        if allow_unlabeled and is_unlabeled(s):
            problem = None if s.box is not None else "an unlabelled face needs a box (FaceSample.box)"
        elif s.landmarks is None:
            problem = "no landmarks (unlabelled faces need allow_unlabeled=True and a box)"
        else:
            problem = check_landmarks(np.asarray(s.landmarks, np.float32), k)
        if problem is None and s.image is None:
            problem = check_image_file(s.image_path) if s.image_path else "no image_path and no in-memory image"
        if problem is None and s.image is not None and (s.image.ndim != 3 or s.image.shape[-1] != 3):
            problem = f"expected an [H, W, 3] image, got shape {s.image.shape}"
        if problem is None:
            good.append(s)
        elif skip_bad:
            skipped.append((where, problem))
        else:
            raise ValueError(f"{where}: {problem}")
    if skipped:
        logging.warning("build_dataset: skipped %d bad sample(s), first: %s", len(skipped), skipped[0])
    return good, skipped


def _source(images, landmarks, k: int, crop_scale: float, input_size: int, skip_bad: bool, allow_unlabeled: bool):
    """Returns (dataset of (image or path, landmarks, crop matrix), is_path, N, skipped)."""
    if isinstance(images, np.ndarray):
        if landmarks is None:
            raise ValueError("build_dataset: an image array needs a landmarks array [N, K, 2]")
        landmarks = np.asarray(landmarks, np.float32)
        if images.ndim != 4 or landmarks.shape != (len(images), k, 2):
            raise ValueError(f"build_dataset: expected images [N,H,W,3] and landmarks [N,{k},2], got "
                             f"{images.shape} and {landmarks.shape}")
        mats = crop_matrix(face_box(landmarks), input_size, crop_scale)
        return tf.data.Dataset.from_tensor_slices((images, landmarks, mats)), False, len(images), []
    samples, skipped = _validate(list(images), k, skip_bad, allow_unlabeled)
    if not samples:
        raise ValueError("build_dataset: no usable samples")
    lms = np.stack([_landmarks_of(s, k) for s in samples])
    boxes = np.stack([face_box(s.landmarks) if s.box is None else np.asarray(s.box, np.float32) for s in samples])
    mats = crop_matrix(boxes, input_size, crop_scale)
    if all(s.image is None for s in samples):
        paths = [s.image_path for s in samples]
        return tf.data.Dataset.from_tensor_slices((paths, lms, mats)), True, len(samples), skipped
    shapes = {s.image.shape if s.image is not None else None for s in samples}
    if len(shapes) == 1 and None not in shapes:
        pixels = np.stack([s.image for s in samples])
        return tf.data.Dataset.from_tensor_slices((pixels, lms, mats)), False, len(samples), skipped

    def generate():  # Mixed sizes or sources: decode in Python.
        import cv2

        for s, lm, m in zip(samples, lms, mats, strict=True):
            image = s.image if s.image is not None else cv2.imread(s.image_path)[:, :, ::-1]
            yield np.ascontiguousarray(image), lm, m

    sig = (tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([k, 2], tf.float32), tf.TensorSpec([2, 3], tf.float32))
    return tf.data.Dataset.from_generator(generate, output_signature=sig), False, len(samples), skipped


def _decode(path, landmarks, matrix):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return image, landmarks, matrix


def build_dataset(
    images,
    landmarks=None,
    spec: str | int | LandmarkSpec = "300w",
    input_size: int = 256,
    heatmap_size: int | None = None,
    sigma: float = 1.0,
    augment: AugmentConfig | None = None,
    batch_size: int = 16,
    shuffle: bool = True,
    seed: int | None = None,
    cache: bool = False,
    repeat: bool = False,
    crop_scale: float = 1.25,
    with_landmarks: bool = False,
    skip_bad: bool = False,
    drop_remainder: bool = False,
    teacher_input_size: int | None = None,
    with_label_weight: bool = False,
    allow_unlabeled: bool = False,
    start: int = 0,
) -> tf.data.Dataset:
    """Builds the training/evaluation input pipeline.

    Args:
        images: A list of `FaceSample` (files decoded with tf.io inside the
            pipeline, or their in-memory images), or uint8 [N, H, W, 3].
        landmarks: float [N, K, 2] original-image pixel centres, with an array `images`.
        spec: Landmark layout (name, K or `LandmarkSpec`); gives K and flip pairs.
        input_size: S, square network input side.
        heatmap_size: Hm, default S // 4.
        sigma: Heatmap Gaussian sigma in heatmap pixels.
        augment: `AugmentConfig`, or None for crop only.
        batch_size: B.
        shuffle: Shuffle the samples (every epoch).
        seed: Makes shuffling and augmentation reproducible; None: random.
        cache: Keep decoded (un-augmented) images in memory after the first pass.
        repeat: Repeat forever (each pass draws new augmentations).
        crop_scale: Crop side relative to the face box's longer side (the
            box is `FaceSample.box`, else the landmarks' bounding box).
        with_landmarks: Also yield the landmarks.
        skip_bad: Drop bad samples (missing/truncated image, wrong K, NaN
            coords) instead of raising; they are listed in ``dataset.skipped``.
        drop_remainder: Drop the last partial batch.
        start: Skip this many elements (faces, not batches) of the repeated
            stream first: the same shuffle order and augmentation draws as an
            uninterrupted stream from that point. To resume at epoch e of
            `steps` batches each, pass ``e * steps * batch_size``
            (`mobilefan_tf.training.resumed_epoch` reads e). Needs `repeat`.
        teacher_input_size: T = r * S (r a whole number): the image becomes
            a dict ``{"student": [B, S, S, 3], "teacher": [B, T, T, 3]}``, the
            same augmented face at both sizes (one affine; the photometric
            draws are shared too; occlusion and blur scale with the size).
        with_label_weight: Also yield the label weight [B] (1 labelled, 0
            unlabelled), as Keras' sample-weight slot: ``(x, heatmaps, weight)``.
        allow_unlabeled: Accept faces without landmarks (`is_unlabeled`)
            that have a ``box``; their heatmaps are all zero.

    Returns:
        Dataset of ``(image, heatmaps)``: float32 [B, S, S, 3] in 0..255 and
        float32 [B, Hm, Hm, K]; with `with_landmarks` a 3-tuple
        ``(image, heatmaps, landmarks)``, landmarks float32 [B, K, 2] in
        input-pixel centres (may fall outside 0..S-1 after augmentation);
        with `with_label_weight` the weight comes last.
    """
    spec = get_spec(spec)
    k = spec.num_points
    heatmap_size = heatmap_size or input_size // 4
    stride = input_size / heatmap_size
    augment = augment or AugmentConfig.none()
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))

    if start < 0 or (start and not repeat):
        raise ValueError(f"build_dataset: start={start} needs repeat=True and start >= 0")
    if teacher_input_size is not None and (teacher_input_size < input_size or teacher_input_size % input_size):
        raise ValueError(f"teacher_input_size {teacher_input_size} must be a whole multiple of input_size {input_size}")
    # The teacher's input shows the same crop r times larger (augment_batch's unit frame).
    sizes = [input_size] + ([teacher_input_size] if teacher_input_size else [])
    ds, is_path, n, skipped = _source(images, landmarks, k, crop_scale, input_size, skip_bad, allow_unlabeled)
    ds = ds.enumerate()  # (index, (image/path, landmarks, matrix))

    def decode(item, key):
        index, x = item
        return (index, _decode(*x)), key

    if cache:
        if is_path:
            ds = ds.map(lambda i, x: decode((i, x), 0)[0], num_parallel_calls=tf.data.AUTOTUNE)
            if skip_bad:  # Files that pass the cheap checks but still fail to decode.
                ds = ds.ignore_errors(log_warning=True)
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(n, 4096) if cache else n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # One random key per element and pass (a stateless hash of the seed and the stream position, so
    # it does not depend on TensorFlow's global seed); with the index it seeds every op.
    keys = tf.data.Dataset.counter().map(
        lambda i: tf.random.stateless_uniform([], tf.stack([tf.constant(seed, tf.int64), i]), None, None, tf.int64))
    ds = tf.data.Dataset.zip(ds, keys)
    if start:  # before decoding, so skipped files are not read (the shuffle and keys replay cheaply)
        ds = ds.skip(start)
    if is_path and not cache:
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        if skip_bad:
            ds = ds.ignore_errors(log_warning=True)

    # The draws come from TensorFlow's stateless RNG; the apply half is the backend-neutral
    # keras.ops code (`augment_batch`), here on TensorFlow whatever the Keras backend is.
    ops = tf_ops()
    perm = spec.flip_permutation

    def augment_one(item, key):
        index, (image, lm, crop) = item
        draws = tf_draws(tf.random.experimental.stateless_fold_in(tf.stack([key, index]), 0))
        # One set of draws, one affine in the crop's unit frame, rendered at each size.
        out = augment_batch(image[None], lm[None], crop[None], draws, augment, sizes, perm, ops)
        pixels = tf.ensure_shape(out[0][0][0], [input_size, input_size, 3])
        if teacher_input_size:
            pixels = {"student": pixels, "teacher": tf.ensure_shape(out[1][0][0], [teacher_input_size] * 2 + [3])}
        return pixels, tf.ensure_shape(out[0][1][0], [k, 2])

    ds = ds.map(augment_one, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def add_heatmaps(pixels, lm):
        maps = encode_heatmaps(input_to_heatmap(lm, stride), heatmap_size, sigma, ops=ops)
        out = (pixels, maps, lm) if with_landmarks else (pixels, maps)
        if with_label_weight:  # labelled: every point finite (unlabelled ones are all NaN)
            out += (tf.cast(tf.reduce_all(tf.math.is_finite(lm), axis=[1, 2]), tf.float32),)
        return out

    ds = ds.map(add_heatmaps, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    ds.skipped = skipped
    return ds
