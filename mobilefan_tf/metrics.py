"""Face-alignment metrics: per-image NME first, then FR, AUC and CED from it.

All functions take landmarks as (x, y) in any one pixel frame (the NME is a
ratio, so the frame cancels as long as prediction and ground truth share it).
"""

from __future__ import annotations

import keras
import numpy as np

from mobilefan_tf.specs import LandmarkSpec, get_spec, spec_config

NORMS = ("inter_ocular", "inter_pupil", "bbox_diagonal")


def normalizer(gt: np.ndarray, spec: LandmarkSpec | str | int, norm: str = "inter_ocular") -> np.ndarray:
    """Per-image normalising distance.

    Args:
        gt: [N, K, 2] ground-truth landmarks.
        spec: The layout (gives eye indices).
        norm: ``inter_ocular`` (outer eye corners), ``inter_pupil`` (pupils, or
            eye-contour centroids where the layout has no pupil points) or
            ``bbox_diagonal`` (diagonal of the landmarks' bounding box).

    Returns:
        [N] distances.
    """
    spec = get_spec(spec)
    gt = np.asarray(gt, np.float64)
    if norm == "inter_ocular":
        a, b = spec.eye_outer
        return np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    if norm == "inter_pupil":
        p = spec.pupil_centers(gt)
        return np.linalg.norm(p[:, 0] - p[:, 1], axis=-1)
    if norm == "bbox_diagonal":
        size = gt.max(axis=1) - gt.min(axis=1)
        return np.linalg.norm(size, axis=-1)
    raise ValueError(f"Unknown NME normaliser {norm!r} (use one of {NORMS})")


def nme_per_image(pred, gt, spec: LandmarkSpec | str | int, norm: str = "inter_ocular") -> np.ndarray:
    """Normalised mean error of each image: mean_k ||pred_k - gt_k|| / d.

    Args:
        pred: [N, K, 2] predicted landmarks.
        gt: [N, K, 2] ground truth, same frame.

    Returns:
        [N] NME of each image, as a fraction (0.035 = 3.5 %).
    """
    return point_errors(pred, gt, spec, norm).mean(axis=-1)


def point_errors(pred, gt, spec: LandmarkSpec | str | int, norm: str = "inter_ocular") -> np.ndarray:
    """Normalised error of every point: ||pred_k - gt_k|| / d, [N, K] (fractions)."""
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be [N, K, 2]; got {pred.shape} and {gt.shape}")
    return np.linalg.norm(pred - gt, axis=-1) / normalizer(gt, spec, norm)[:, None]


def nme_per_part(pred, gt, spec: LandmarkSpec | str | int, norm: str = "inter_ocular") -> dict[str, float]:
    """Where the error lies: the NME of each point group of the layout (`LandmarkSpec.groups`).

    Args:
        pred: [N, K, 2] predicted landmarks.
        gt: [N, K, 2] ground truth, same frame.

    Returns:
        {group name: mean over the images and the group's points of ||pred_k - gt_k|| / d},
        fractions, in the layout's group order (300W: jaw, brows, nose, eyes, mouth).
    """
    err = point_errors(pred, gt, spec, norm)
    return {name: float(err[:, list(idx)].mean()) for name, idx in get_spec(spec).groups.items()}


def failure_rate(nmes, threshold: float = 0.08) -> float:
    """Fraction of images whose NME is above `threshold`."""
    nmes = np.asarray(nmes, np.float64)
    return float(np.mean(nmes > threshold))


def auc(nmes, threshold: float = 0.08) -> float:
    """Area under the CED curve on [0, threshold], normalised to [0, 1].

    Computed exactly: the CED is a step function, so its area is
    mean_i max(0, threshold - nme_i) / threshold (no sampling of the curve).
    """
    nmes = np.asarray(nmes, np.float64)
    return float(np.mean(np.clip(threshold - nmes, 0.0, None)) / threshold)


def ced_curve(nmes, threshold: float = 0.08, num: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: x = NME in [0, threshold], y = fraction of images with NME <= x."""
    nmes = np.sort(np.asarray(nmes, np.float64))
    x = np.linspace(0.0, threshold, num)
    y = np.searchsorted(nmes, x, side="right") / max(len(nmes), 1)
    return x, y


def summarize(nmes, threshold: float = 0.08) -> dict[str, float]:
    """NME (mean), FR and AUC at `threshold` as a dict."""
    nmes = np.asarray(nmes, np.float64)
    return {
        "nme": float(nmes.mean()),
        "failure_rate": failure_rate(nmes, threshold),
        "auc": auc(nmes, threshold),
        "threshold": threshold,
        "num_images": int(nmes.size),
    }


@keras.saving.register_keras_serializable(package="mobilefan_tf")
class NormalizedMeanError(keras.metrics.Metric):
    """Mean NME of decoded heatmaps, for `model.fit`; the spec's `default_norm` unless `norm` is given.

    y_true and y_pred are [B, H, W, K] heatmaps; both are decoded (DARK), so
    ground truth needs no extra input. Reported as a fraction. An optional
    sample_weight [B] weights each image (0 leaves it out).
    """

    def __init__(self, spec: str | int | dict | LandmarkSpec = "300w", norm: str | None = None, name: str = "nme",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.spec_name = get_spec(spec).name
        self.spec_config = spec_config(spec)  # a custom layout is saved whole, so a reload needs no spec file
        self.norm = norm or get_spec(spec).default_norm  # COFW: inter-pupil
        if self.norm not in NORMS:
            raise ValueError(f"Unknown NME normaliser {norm!r} (use one of {NORMS})")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        # keras.ops (any backend); imported here so the NumPy metrics above load without Keras models.
        from mobilefan_tf.heatmaps import decode_heatmaps

        ops = keras.ops
        spec = get_spec(self.spec_config)
        gt, _ = decode_heatmaps(y_true)
        pred, _ = decode_heatmaps(y_pred)
        if self.norm == "inter_ocular":
            a, b = spec.eye_outer
            d = ops.norm(gt[:, a] - gt[:, b], axis=-1)
        elif self.norm == "inter_pupil":
            if spec.pupils is not None:
                pa, pb = gt[:, spec.pupils[0]], gt[:, spec.pupils[1]]
            else:
                pa = ops.mean(ops.take(gt, list(spec.eye_contours[0]), axis=1), axis=1)
                pb = ops.mean(ops.take(gt, list(spec.eye_contours[1]), axis=1), axis=1)
            d = ops.norm(pa - pb, axis=-1)
        else:
            d = ops.norm(ops.max(gt, axis=1) - ops.min(gt, axis=1), axis=-1)
        nme = ops.mean(ops.norm(pred - gt, axis=-1), axis=-1) / ops.maximum(d, 1e-6)
        if sample_weight is None:
            weight = ops.ones_like(nme)
        else:  # e.g. 0 for unlabelled faces (all-zero target maps) in distillation
            weight = ops.reshape(ops.cast(sample_weight, "float32"), [-1])
            nme = ops.where(weight > 0, nme, 0.0)
        self.total.assign_add(ops.sum(nme * weight))
        self.count.assign_add(ops.sum(weight))

    def result(self):
        return self.total / keras.ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "spec": self.spec_config, "norm": self.norm}
