"""Benchmark evaluation: crop each annotated face like training, predict, score.

Landmarks are compared in the original image's pixel frame (predictions are
mapped back through the crop's affine), so the NME does not depend on the
crop size. The face box is the ground-truth landmark box (the 300W
protocol), enlarged by the crop scale the model was trained with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from mobilefan_tf.export import DEFAULT_CROP_SCALE
from mobilefan_tf.flip_averaging import FlipTestModel
from mobilefan_tf.metrics import nme_per_image, nme_per_part, summarize


def _as_model(model_or_predictor):
    """(runner with predict_landmarks, crop scale) from a model, runner, Predictor or path."""
    from mobilefan_tf.predictor import Predictor, load_landmark_model

    if isinstance(model_or_predictor, (str, os.PathLike)):
        model_or_predictor = load_landmark_model(os.fspath(model_or_predictor))
    if isinstance(model_or_predictor, Predictor):
        return model_or_predictor.model, model_or_predictor.crop_scale
    scale = getattr(model_or_predictor, "crop_scale", None) or DEFAULT_CROP_SCALE
    return model_or_predictor, float(scale)


def _sample_image(sample) -> np.ndarray:
    from mobilefan_tf.predictor import read_image, to_rgb_uint8

    if sample.image is not None:
        return to_rgb_uint8(sample.image)
    try:
        return read_image(sample.image_path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{sample.image_path}: {err}") from None


def shrink_faces(samples: Sequence, side: float) -> list:
    """The faces as they would be if photographed smaller: for "how small a face still works".

    Each photo is scaled (OpenCV area averaging, as a camera's coarser
    sensor would sample it) so that its landmark box's longer side is `side`
    pixels; the landmarks follow (pixel-centre frame: x' = (x + 0.5) * s - 0.5).
    Faces already at most `side` are kept as they are, never enlarged. An
    evaluation then crops and resizes each face up to the model's input, as
    the predictor does for a small face in a photo.

    Args:
        samples: `FaceSample`s (image in memory or `image_path`), landmarks [K, 2].
        side: Target landmark-box side in pixels (> 1).

    Returns:
        New `FaceSample`s with the scaled image in memory, ``box`` None.
    """
    import dataclasses

    import cv2

    if not side > 1:
        raise ValueError(f"face side must be > 1 pixel, got {side}")
    out = []
    for sample in samples:
        image, landmarks = _sample_image(sample), np.asarray(sample.landmarks, np.float32)
        scale = side / float((landmarks.max(0) - landmarks.min(0)).max())
        if scale < 1:
            h, w = image.shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            # The exact scale of each axis after rounding the size, so the landmarks stay on the pixels.
            factor = np.array([size[0] / w, size[1] / h], np.float32)
            landmarks = (landmarks + 0.5) * factor - 0.5
        out.append(dataclasses.replace(sample, image=image, image_path=None, landmarks=landmarks, box=None))
    return out


def evaluate_model(
    model_or_predictor,
    samples: Sequence,
    spec=None,
    threshold: float = 0.08,
    crop_scale: float | None = None,
    norm: str | None = None,
    batch_size: int = 16,
    return_landmarks: bool = False,
) -> dict:
    """Scores a model on annotated faces.

    Args:
        model_or_predictor: A Keras landmark model, a runner (`TFLiteModel`,
            `SavedModelRunner`), a `Predictor` or a model path.
        samples: `FaceSample`s (image in memory or `image_path`), landmarks
            [K, 2] in image pixels.
        spec: Landmark layout (name, `LandmarkSpec`, spec file): gives the
            NME normaliser's points; default: the model's own (`specs.model_spec`).
        threshold: NME threshold of the failure rate and the AUC.
        crop_scale: Crop side / landmark-box side; defaults to the model's
            metadata (`crop_scale`) or 1.25.
        norm: NME normaliser (see `metrics.normalizer`); default: the spec's
            ``default_norm`` (COFW inter-pupil, the others inter-ocular).
        batch_size: Faces per model call.
        return_landmarks: Also return ``landmarks`` [N, K, 2] predictions
            in image pixels (a NumPy array, not JSON).

    Returns:
        JSON-ready dict: ``num_images``, ``nme`` (mean, fraction of the
        normaliser), ``failure_rate``, ``auc``, ``threshold``, ``norm``, ``spec`` (its name),
        ``crop_scale``, ``flip_test`` (whether the model averages each face
        with its mirror image, `flip_test.FlipTestModel`), ``parts``
        ({point group: NME}, `metrics.nme_per_part`) and ``per_image``:
        [{``file``, ``nme``}] in sample order.
    """
    from mobilefan_tf.data import apply_affine, crop_face, invert_affine

    if not len(samples):
        raise ValueError("no samples to evaluate")
    from mobilefan_tf.specs import get_spec, model_spec

    model, scale = _as_model(model_or_predictor)
    if spec is None:
        try:
            spec = model_spec(model)
        except ValueError:  # a bare runner: the layout with the ground truth's point count
            spec = len(samples[0].landmarks)
    spec = get_spec(spec)
    norm = norm or spec.default_norm
    if getattr(model, "num_keypoints", None) is not None and int(model.num_keypoints) != spec.num_points:
        raise ValueError(f"model predicts {model.num_keypoints} points but spec {spec.name!r} has {spec.num_points}")
    scale = float(crop_scale or scale)
    size = int(model.input_size)
    preds, gts = [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        crops, matrices = [], []
        for sample in chunk:
            crop, matrix = crop_face(_sample_image(sample), landmarks=sample.landmarks, output_size=size, scale=scale)
            crops.append(crop)
            matrices.append(matrix)
        landmarks, _ = model.predict_landmarks(np.stack(crops).astype(np.float32))
        for matrix, lm, sample in zip(matrices, landmarks, chunk, strict=True):
            preds.append(apply_affine(invert_affine(matrix), lm))
            gts.append(np.asarray(sample.landmarks, np.float32))
    preds, gts = np.stack(preds), np.stack(gts)
    nmes = nme_per_image(preds, gts, spec, norm)
    result = summarize(nmes, threshold)
    result["parts"] = nme_per_part(preds, gts, spec, norm)
    result.update(norm=norm, spec=spec.name, crop_scale=scale, flip_test=isinstance(model, FlipTestModel))
    result["per_image"] = [
        {"file": s.image_path or s.name, "nme": float(v)} for s, v in zip(samples, nmes, strict=True)
    ]
    if return_landmarks:
        result["landmarks"] = preds
    return result


def evaluation_subsets(samples: Sequence, spec) -> dict[str, list[int]]:
    """The dataset's standard subsets, as sample indices; ``all`` first.

    * 300W: ``common``, ``challenging`` and ``full`` (= both) when the folder
      layout names them (``attributes["subset"]``, see `data.subset_300w`).
    * WFLW: each attribute subset (pose, expression, illumination, make_up,
      occlusion, blur) with at least one face, when the attribute columns
      are present.
    * COFW and custom layouts: ``all`` only.
    """
    from mobilefan_tf.data.readers import WFLW_ATTRIBUTES
    from mobilefan_tf.specs import get_spec

    spec = get_spec(spec)
    out = {"all": list(range(len(samples)))}
    if spec.is_builtin and spec.name == "300w":
        tags = [s.attributes.get("subset") for s in samples]
        for name in ("common", "challenging"):
            if name in tags:
                out[name] = [i for i, t in enumerate(tags) if t == name]
        if "common" in out or "challenging" in out:
            out["full"] = [i for i, t in enumerate(tags) if t in ("common", "challenging")]
    elif spec.is_builtin and spec.name == "wflw":
        for attr in WFLW_ATTRIBUTES:
            idx = [i for i, s in enumerate(samples) if s.attributes.get(attr)]
            if idx:
                out[attr] = idx
    return out


def subset_results(result: dict, subsets: dict[str, list[int]]) -> dict[str, dict]:
    """Per-subset NME / FR / AUC / count from one `evaluate_model` result (no re-run)."""
    nmes = np.array([p["nme"] for p in result["per_image"]])
    return {name: {**summarize(nmes[idx], result["threshold"]), "norm": result["norm"]} for name, idx in subsets.items()}


def format_subset_table(subsets: dict[str, dict]) -> str:
    """A fixed-width table: subset, faces, NME %, FR %, AUC."""
    threshold = next(iter(subsets.values()))["threshold"]
    rows = [f"{'subset':<13}{'faces':>6}{'NME %':>9}{f'FR@{threshold:g} %':>11}{'AUC':>8}"]
    for name, r in subsets.items():
        rows.append(f"{name:<13}{r['num_images']:>6}{100 * r['nme']:>9.3f}{100 * r['failure_rate']:>11.2f}{r['auc']:>8.4f}")
    return "\n".join(rows)


def plot_ced(results: dict, path: str, threshold: float = 0.08, title: str = "Cumulative error distribution") -> str:
    """Draws one CED curve per model.

    Args:
        results: name -> per-image NMEs ([N] fractions), or name -> an
            `evaluate_model` result dict.
        path: Output image (PNG, PDF, ...).
        threshold: Right end of the x axis (NME fraction).

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilefan_tf.metrics import auc, ced_curve, failure_rate

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, value in results.items():
        nmes = [p["nme"] for p in value["per_image"]] if isinstance(value, dict) else value
        x, y = ced_curve(nmes, threshold)
        label = f"{name} (AUC {auc(nmes, threshold):.3f}, FR {100 * failure_rate(nmes, threshold):.1f}%)"
        ax.plot(100 * x, y, label=label)
    ax.set(xlabel="NME (%)", ylabel="Fraction of images", xlim=(0, 100 * threshold), ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def overlay_grid(
    images: Sequence[np.ndarray],
    predictions,
    nmes,
    path: str,
    ground_truth=None,
    num: int = 4,
    crop_scale: float = 1.4,
) -> str:
    """Best and worst faces side by side: prediction (red) over ground truth (green).

    Args:
        images: uint8 RGB photos, one per face.
        predictions: [N, K, 2] landmarks in those photos' pixels.
        nmes: [N] per-image NME.
        path: Output image.
        ground_truth: Optional [N, K, 2] landmarks, drawn under the predictions.
        num: Faces per row (top row best, bottom row worst).
        crop_scale: Each panel shows the landmark box enlarged this much.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilefan_tf.data import apply_affine, crop_face

    nmes = np.asarray(nmes)
    order = np.argsort(nmes)
    num = min(num, len(order))
    rows = {"best": order[:num], "worst": order[::-1][:num]}
    fig, axes = plt.subplots(2, num, figsize=(2.2 * num, 4.6), dpi=120, squeeze=False)
    for r, (label, idx) in enumerate(rows.items()):
        for c, i in enumerate(idx):
            ref = ground_truth[i] if ground_truth is not None else predictions[i]
            crop, matrix = crop_face(np.asarray(images[i]), landmarks=ref, output_size=192, scale=crop_scale)
            ax = axes[r, c]
            ax.imshow(crop)
            if ground_truth is not None:
                gt = apply_affine(matrix, ground_truth[i])
                ax.scatter(gt[:, 0], gt[:, 1], s=4, c="lime")
            pr = apply_affine(matrix, predictions[i])
            ax.scatter(pr[:, 0], pr[:, 1], s=4, c="red")
            ax.set_title(f"{label}: {100 * nmes[i]:.2f}%", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
