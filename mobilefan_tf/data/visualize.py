"""Landmark drawing and PNG sample grids (for eyeballing the data path)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from mobilefan_tf.specs import LandmarkSpec, get_spec

# RGB colours cycled over the spec's groups.
_PALETTE = [
    (255, 64, 64), (255, 160, 0), (255, 255, 0), (0, 220, 0), (0, 200, 255),
    (64, 96, 255), (200, 64, 255), (255, 64, 200), (255, 255, 255), (128, 255, 160),
]


def draw_landmarks(image: np.ndarray, landmarks: np.ndarray, spec: str | int | LandmarkSpec, radius: int = 2) -> np.ndarray:
    """Draws landmarks coloured by group (lines within groups, closed ones closed).

    Args:
        image: [H, W, 3] RGB, uint8 or float in 0..255.
        landmarks: [K, 2] (x, y) pixel centres of `image`.
        spec: Landmark layout.
        radius: Dot radius in pixels.

    Returns:
        uint8 [H, W, 3] RGB copy with the drawing. Index 0 and the first
        eye-outer point (image-left for an unflipped face) get a white ring.
    """
    spec = get_spec(spec)
    out = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))
    pts = np.asarray(landmarks, np.float32)
    fixed = np.round(pts * 16).astype(np.int32)
    for colour, (group, idx) in zip(_PALETTE * 4, spec.groups.items(), strict=False):
        poly = fixed[list(idx)]
        if len(idx) > 1:
            cv2.polylines(out, [poly.reshape(-1, 1, 2)], group in spec.closed_groups, colour, 1, cv2.LINE_AA, 4)
        for p in poly:
            cv2.circle(out, (int(p[0]), int(p[1])), radius * 16, colour, -1, cv2.LINE_AA, 4)
    for i in (0, spec.eye_outer[0]):
        cv2.circle(out, (int(fixed[i, 0]), int(fixed[i, 1])), (radius + 2) * 16, (255, 255, 255), 1, cv2.LINE_AA, 4)
    return out


def sample_grid(
    images: np.ndarray, landmarks: np.ndarray, spec: str | int | LandmarkSpec, path: str | os.PathLike, cols: int = 4
) -> np.ndarray:
    """Writes a PNG grid of faces with their landmarks.

    Args:
        images: [N, S, S, 3] RGB (uint8 or float 0..255).
        landmarks: [N, K, 2] pixel centres of each image.
        spec: Landmark layout (group colours).
        path: Output .png.
        cols: Faces per row.

    Returns:
        The grid, uint8 [rows * S, cols * S, 3] RGB.
    """
    images, landmarks = np.asarray(images), np.asarray(landmarks)
    n, h, w = images.shape[:3]
    rows = -(-n // cols)
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = draw_landmarks(images[i], landmarks[i], spec)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(str(path), grid[:, :, ::-1]):
        raise ValueError(f"{path}: could not write the PNG")
    return grid
