"""Folders of photos in bulk: detection per photo, model calls batched across photos.

`Predictor.predict` runs the model once per photo; on a folder of one-face
photos that is one call (and its fixed overhead) per face. `predict_files`
does the same steps (detect, crop like training, model, map back through the
crop's affine) but pools the crops of consecutive photos into batches of
`batch_size` faces, and yields the photos in order. A photo that cannot be
read or detected on is reported through `on_error` and skipped.

Landmarks are (x, y) in each photo's pixels, pixel-centre frame, as `Predictor`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from mobilefan_tf.data.transforms import apply_affine, crop_face, invert_affine
from mobilefan_tf.predictor import read_image


def predict_files(
    predictor,
    paths: Iterable[str],
    batch_size: int = 32,
    boxes=None,
    on_error: Callable[[str, Exception], None] | None = None,
) -> Iterator[tuple[str, np.ndarray, list[dict]]]:
    """Landmarks of every face in many photos, with batched model calls.

    Args:
        predictor: A `Predictor` (model, detector, crop scale).
        paths: Photo files.
        batch_size: Faces per model call (photos are pooled until it is reached).
        boxes: Optional [N, 4] face boxes used for every photo (no detection).
        on_error: Called with (path, error) for a photo that cannot be read or
            searched (OSError / ValueError); the photo is skipped. None re-raises.

    Yields:
        (path, photo uint8 [H, W, 3], faces) in the order of `paths`; faces as
        `Predictor.predict`: ``box`` [4], ``landmarks`` [K, 2] float32 (photo
        pixels), ``scores`` [K], ``detector_score`` (None for given boxes).
    """
    size, scale = predictor.model.input_size, predictor.crop_scale
    pending, crops = [], []  # pending: (path, photo, boxes, detector scores, matrices) waiting for the next model call

    def flush():
        if crops:
            landmarks, scores = predictor.model.predict_landmarks(np.stack(crops).astype(np.float32))
        crops.clear()
        start = 0
        for path, photo, face_boxes, detector_scores, matrices in pending:
            faces = []
            for i, (box, matrix) in enumerate(zip(face_boxes, matrices, strict=True)):
                back = apply_affine(invert_affine(matrix), landmarks[start + i])
                face = {"box": box.astype(np.float32), "landmarks": back, "scores": scores[start + i]}
                face["detector_score"] = None if detector_scores is None else float(detector_scores[i])
                faces.append(face)
            start += len(face_boxes)
            yield path, photo, faces
        pending.clear()

    for path in paths:
        try:
            photo = read_image(path)
            if boxes is None:
                face_boxes, detector_scores = predictor.detect(photo)
            else:
                face_boxes, detector_scores = np.asarray(boxes, np.float64).reshape(-1, 4), None
        except (OSError, ValueError) as err:
            if on_error is None:
                raise
            on_error(path, err)
            continue
        matrices = []
        for box in face_boxes:
            crop, matrix = crop_face(photo, box=box, output_size=size, scale=scale)
            crops.append(crop)
            matrices.append(matrix)
        pending.append((path, photo, face_boxes, detector_scores, matrices))
        if len(crops) >= batch_size:
            yield from flush()
    yield from flush()
