"""Square face crops and 2x3 affine helpers.

All matrices map (x, y) 0-based pixel-centre coordinates of a source image to
those of a destination image: ``dst = M[:, :2] @ src + M[:, 2]``. This is
cv2's ``warpAffine`` convention, so ``cv2.warpAffine(image, M, (S, S))``
renders the destination and `apply_affine(M, points)` moves landmarks with it.
"""

from __future__ import annotations

import cv2
import numpy as np


def face_box(landmarks: np.ndarray) -> np.ndarray:
    """Bounding box (x0, y0, x1, y1) of the finite landmarks, float32 [..., 4]."""
    landmarks = np.asarray(landmarks, np.float32)
    lo, hi = np.nanmin(landmarks, axis=-2), np.nanmax(landmarks, axis=-2)
    return np.concatenate([lo, hi], axis=-1)


def crop_matrix(box: np.ndarray, output_size: int, scale: float = 1.25) -> np.ndarray:
    """Affine mapping a face box to a centred square crop.

    The crop is a square of side ``scale * max(box width, box height)``
    centred on the box, resampled to ``output_size`` pixels.

    Args:
        box: float [..., 4] (x0, y0, x1, y1).
        output_size: S, crop side in pixels.
        scale: Crop side relative to the box's longer side.

    Returns:
        float32 [..., 2, 3] matrices (original pixel centres -> crop pixel centres).
    """
    box = np.asarray(box, np.float64)
    centre = (box[..., :2] + box[..., 2:]) / 2.0
    side = scale * np.maximum(box[..., 2] - box[..., 0], box[..., 3] - box[..., 1])
    s = output_size / np.maximum(side, 1e-6)
    # The crop's left edge (x = -0.5 in crop pixels) sits at centre - side / 2.
    t = (output_size / 2.0 - 0.5) - s[..., None] * centre
    zero = np.zeros_like(s)
    rows = [np.stack([s, zero, t[..., 0]], -1), np.stack([zero, s, t[..., 1]], -1)]
    return np.stack(rows, -2).astype(np.float32)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies [..., 2, 3] matrices to [..., K, 2] points."""
    matrix = np.asarray(matrix, np.float64)
    points = np.asarray(points, np.float64)
    out = np.einsum("...ij,...kj->...ki", matrix[..., :2], points) + matrix[..., None, :, 2]
    return out.astype(np.float32)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of [..., 2, 3] affine matrices."""
    matrix = np.asarray(matrix, np.float64)
    inv = np.linalg.inv(matrix[..., :2])
    t = -np.einsum("...ij,...j->...i", inv, matrix[..., 2])
    return np.concatenate([inv, t[..., None]], axis=-1).astype(np.float32)


def compose_affine(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The affine applying `first` then `second`, [..., 2, 3]."""
    second, first = np.asarray(second, np.float64), np.asarray(first, np.float64)
    lin = second[..., :2] @ first[..., :2]
    t = np.einsum("...ij,...j->...i", second[..., :2], first[..., 2]) + second[..., 2]
    return np.concatenate([lin, t[..., None]], axis=-1).astype(np.float32)


def crop_face(
    image: np.ndarray,
    landmarks: np.ndarray | None = None,
    box: np.ndarray | None = None,
    output_size: int = 256,
    scale: float = 1.25,
) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around a face with one bilinear ``cv2.warpAffine``.

    Args:
        image: uint8 [H, W, 3].
        landmarks: [K, 2] points whose bounding box is used when `box` is None.
        box: (x0, y0, x1, y1) face box, preferred over `landmarks`.
        output_size: S.
        scale: Crop side relative to the box's longer side.

    Returns:
        crop: uint8 [S, S, 3], black outside the image.
        matrix: float32 [2, 3], original pixel centres -> crop pixel centres.
        Map predictions back with ``apply_affine(invert_affine(matrix), pts)``.
    """
    if box is None:
        if landmarks is None:
            raise ValueError("crop_face needs a box or landmarks")
        box = face_box(landmarks)
    matrix = crop_matrix(box, output_size, scale)
    crop = cv2.warpAffine(
        np.ascontiguousarray(image), matrix.astype(np.float64), (output_size, output_size),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    return crop, matrix
