"""`FaceFeeder`: a NumPy / `keras.utils.PyDataset` input pipeline for any Keras backend.

The tf.data pipeline (`mobilefan_tf.data.pipeline.build_dataset`) needs
TensorFlow. This feeder gives `model.fit` the same batches on a machine
without it (e.g. a JAX GPU machine): NumPy draws the numbers (a generator
seeded by (seed, epoch, batch)), and the shared apply half
(`mobilefan_tf.data.augment.augment_batch`) and the heatmap encoding run in
`keras.ops` on the active backend (jit-compiled under JAX). Given the same
draws, its faces are the ones tf.data makes (tested).

Faces are kept in memory (decoded once); a batch of different-sized sources
is zero-padded to one size, which does not change the warp (black fill).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from mobilefan_tf.data.augment import NUM_DRAWS, augment_batch
from mobilefan_tf.data.config import AugmentConfig
from mobilefan_tf.data.transforms import crop_matrix, face_box
from mobilefan_tf.heatmaps import encode_heatmaps, input_to_heatmap
from mobilefan_tf.specs import LandmarkSpec, get_spec


def _load(images, landmarks, k: int, allow_unlabeled: bool) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(uint8 images, float32 landmarks [N, K, 2], face boxes [N, 4]) from an array or `FaceSample`s."""
    if isinstance(images, np.ndarray):
        landmarks = np.asarray(landmarks, np.float32)
        if images.ndim != 4 or landmarks.shape != (len(images), k, 2):
            raise ValueError(f"FaceFeeder: expected images [N,H,W,3] and landmarks [N,{k},2], got "
                             f"{images.shape} and {None if landmarks is None else landmarks.shape}")
        return list(images), landmarks, face_box(landmarks)
    import cv2

    pixels, lms, boxes = [], [], []
    for s in images:
        image = s.image
        if image is None:
            image = cv2.imread(s.image_path)
            if image is None:
                raise ValueError(f"{s.image_path}: cannot read the image")
            image = image[:, :, ::-1]
        where = s.image_path or s.name
        if s.landmarks is None or not np.isfinite(np.asarray(s.landmarks, np.float32)).any():  # unlabelled
            if not allow_unlabeled or s.box is None:
                raise ValueError(f"{where}: no landmarks (unlabelled faces need allow_unlabeled=True and a box)")
            lm = np.full((k, 2), np.nan, np.float32)
        else:
            lm = np.asarray(s.landmarks, np.float32)
        if lm.shape != (k, 2):
            raise ValueError(f"{where}: expected {k} landmarks, got shape {lm.shape}")
        pixels.append(np.ascontiguousarray(image))
        lms.append(lm)
        boxes.append(face_box(lm) if s.box is None else np.asarray(s.box, np.float32))
    if not pixels:
        raise ValueError("FaceFeeder: no samples")
    return pixels, np.stack(lms), np.stack(boxes)


class FaceFeeder(keras.utils.PyDataset):
    """Batches of ``(images, heatmaps)`` for `model.fit` on any backend.

    Args:
        images: A list of `FaceSample` (in-memory images, or files read once
            with cv2), or uint8 [N, H, W, 3].
        landmarks: float [N, K, 2] original-image pixel centres, with an array `images`.
        spec: Landmark layout (name, K or `LandmarkSpec`).
        input_size: S, square network input side.
        heatmap_size: Hm, default S // 4.
        sigma: Heatmap Gaussian sigma in heatmap pixels.
        augment: `AugmentConfig`, or None for crop only.
        batch_size: B.
        shuffle: A new order every epoch.
        seed: Seeds the order and the draws (with the epoch and batch index).
        crop_scale: Crop side relative to the face box's longer side.
        with_landmarks: Also yield the landmarks (input pixels), as build_dataset does.
        drop_remainder: Drop the last partial batch.
        num_outputs: Repeat the heatmaps for a model with this many supervised outputs.
        teacher_input_size: T = r * S: images become ``{"student": [B, S, S, 3],
            "teacher": [B, T, T, 3]}``, the same augmented face (as build_dataset).
        with_label_weight: Also yield the label weight [B] (1 labelled, 0 unlabelled) last.
        allow_unlabeled: Accept faces without landmarks that have a ``box`` (all-zero heatmaps).
        **kwargs: `keras.utils.PyDataset` options (workers, ...).

    Each item is float32 images [B, S, S, 3] in 0..255 and heatmaps
    [B, Hm, Hm, K] (a tuple of `num_outputs` of them when > 1), as NumPy.
    """

    def __init__(
        self,
        images,
        landmarks=None,
        spec: str | int | LandmarkSpec = "300w",
        input_size: int = 256,
        heatmap_size: int | None = None,
        sigma: float = 1.0,
        augment: AugmentConfig | None = None,
        batch_size: int = 16,
        shuffle: bool = True,
        seed: int = 0,
        crop_scale: float = 1.25,
        with_landmarks: bool = False,
        drop_remainder: bool = False,
        num_outputs: int = 1,
        teacher_input_size: int | None = None,
        with_label_weight: bool = False,
        allow_unlabeled: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if teacher_input_size is not None and (teacher_input_size < input_size or teacher_input_size % input_size):
            raise ValueError(f"teacher_input_size {teacher_input_size} must be a whole multiple of input_size {input_size}")
        self.spec = get_spec(spec)
        self.images, self.landmarks, boxes = _load(images, landmarks, self.spec.num_points, allow_unlabeled)
        self.sizes = [input_size] + ([teacher_input_size] if teacher_input_size else [])
        self.with_label_weight = with_label_weight
        self.crops = crop_matrix(boxes, input_size, crop_scale)
        self.input_size = input_size
        self.heatmap_size = heatmap_size or input_size // 4
        self.sigma = sigma
        self.augment = augment
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.with_landmarks = with_landmarks
        self.drop_remainder = drop_remainder
        self.num_outputs = num_outputs
        self.epoch = 0
        self._fn = self._make_fn()

    def _make_fn(self):
        config = self.augment or AugmentConfig.none()
        stride = self.input_size / self.heatmap_size
        perm = self.spec.flip_permutation

        def fn(images, landmarks, crops, draws):
            out = augment_batch(images, landmarks, crops, draws, config, self.sizes, perm)
            (pixels, moved), big = out[0], [px for px, _ in out[1:]]
            heatmaps = encode_heatmaps(input_to_heatmap(moved, stride), self.heatmap_size, self.sigma)
            return (pixels, heatmaps, moved, *big)

        if keras.backend.backend() == "jax":
            import jax

            return jax.jit(fn)
        return fn

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """Face indices of `epoch`, in batch order."""
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, epoch, 1]).permutation(len(self.images))

    def draws(self, epoch: int, index: int, count: int) -> np.ndarray:
        """float32 [count, NUM_DRAWS] uniform draws of batch `index` of `epoch` (zeros without augmentation)."""
        if self.augment is None:
            return np.zeros((count, NUM_DRAWS), np.float32)
        return np.random.default_rng([self.seed, epoch, 2, index]).random((count, NUM_DRAWS), np.float32)

    def batch(self, indices: Sequence[int], draws: np.ndarray):
        """Augmented pixels, heatmaps and landmarks (NumPy) of the faces `indices` with these draws."""
        sources = [self.images[i] for i in indices]
        h = max(im.shape[0] for im in sources)
        w = max(im.shape[1] for im in sources)
        stacked = np.zeros((len(sources), h, w, 3), np.uint8)
        for j, im in enumerate(sources):
            stacked[j, :im.shape[0], :im.shape[1]] = im  # zero padding = the warp's black fill
        idx = np.asarray(indices)
        out = self._fn(stacked, self.landmarks[idx], self.crops[idx], np.asarray(draws, np.float32))
        return tuple(keras.ops.convert_to_numpy(t) for t in out)

    def __getitem__(self, index: int):
        indices = self.order(self.epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        pixels, heatmaps, moved, *big = self.batch(indices, self.draws(self.epoch, index, len(indices)))
        x = {"student": pixels, "teacher": big[0]} if big else pixels
        if self.with_landmarks:
            out = (x, heatmaps, moved)
        else:
            out = (x, heatmaps if self.num_outputs == 1 else tuple([heatmaps] * self.num_outputs))
        if self.with_label_weight:  # labelled: every point finite (unlabelled ones are all NaN)
            out += (np.isfinite(moved).all(axis=(1, 2)).astype(np.float32),)
        return out

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def epoch_callback(self) -> keras.callbacks.Callback:
        """A callback keeping `epoch` equal to the epoch `model.fit` runs.

        A run resumed by `BackupAndRestore` starts at a later epoch: with this
        callback its batches continue the augmentation stream instead of
        replaying epoch 0's (`mobilefan_tf.training.fit` adds it).
        """
        feeder = self

        class _FeederEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                feeder.epoch = epoch

        return _FeederEpoch()
