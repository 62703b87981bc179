"""Test videos made from one face photo, with the true landmarks of every frame.

A face crop (e.g. a 300W training crop, landmarks known) is pasted onto a
smooth random background through a per-frame similarity transform (pan,
zoom, in-plane rotation) with a feathered round mask, and Gaussian sensor
noise is added to every frame. The landmarks go through the same transform,
so each frame has exact ground truth. Two clips measure a tracker:

- `still_face_video`: the face does not move; only the noise changes, so any
  frame-to-frame motion of the predicted landmarks is jitter.
- `moving_face_video`: the face pans, zooms and rotates smoothly; the error
  and the delay of the predictions against the truth are accuracy and lag.

Coordinates are (x, y) pixel centres (top-left pixel centre = 0, 0).
"""

from __future__ import annotations

import cv2
import numpy as np

from mobilefan_tf.data.transforms import apply_affine, face_box


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour clouds: low-frequency noise upsampled (no edges a detector could take for a face)."""
    small = rng.uniform(40, 200, (max(2, height // 60), max(2, width // 60), 3)).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _similarity(centre_src, centre_dst, scale: float, angle_deg: float) -> np.ndarray:
    """[2, 3] map rotating by `angle_deg` (counter-clockwise on screen) and scaling about centre_src, to centre_dst."""
    a = np.deg2rad(angle_deg)
    lin = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    t = np.asarray(centre_dst, np.float64) - lin @ np.asarray(centre_src, np.float64)
    return np.concatenate([lin, t[:, None]], axis=1)


def render_face(
    face: np.ndarray,
    landmarks: np.ndarray,
    matrices: np.ndarray,
    size: tuple[int, int] = (480, 640),
    noise_std: float = 3.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Renders a face through one affine per frame.

    Args:
        face: uint8 RGB [h, w, 3] face crop.
        landmarks: [K, 2] its landmarks (crop pixels).
        matrices: [T, 2, 3] crop pixels -> frame pixels, one per frame.
        size: (H, W) of the frames.
        noise_std: Std of the Gaussian sensor noise (grey levels), fresh every frame.
        seed: Background and noise seed.

    Returns:
        frames: uint8 [T, H, W, 3].
        truth: float32 [T, K, 2] landmarks in frame pixels.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    background = _background(h, w, rng)
    fh, fw = face.shape[:2]
    # Feathered disc covering the face box with margin (the crop's own edges stay hidden).
    lo, hi = face_box(landmarks)[:2], face_box(landmarks)[2:]
    radius = 0.75 * float(np.max(hi - lo))  # the crop itself (300W: 0.8 side from the centre) must not show
    yy, xx = np.mgrid[0:fh, 0:fw]
    centre = (lo + hi) / 2
    dist = np.hypot(xx - centre[0], yy - centre[1])
    mask = np.clip((radius - dist) / (0.08 * radius), 0, 1).astype(np.float32)
    frames, truth = [], []
    for m in np.asarray(matrices, np.float64):
        warped = cv2.warpAffine(face.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        frame = alpha * warped + (1 - alpha) * background + rng.normal(0, noise_std, (h, w, 3))
        frames.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
        truth.append(apply_affine(m, landmarks))
    return np.stack(frames), np.stack(truth).astype(np.float32)


def still_face_video(face, landmarks, num_frames: int = 60, size=(480, 640), face_side: float = 160.0,
                     noise_std: float = 6.0, seed: int = 0):
    """A face standing still in the frame centre; only the sensor noise changes.

    Args:
        face, landmarks: The face crop and its [K, 2] landmarks.
        num_frames: T.
        size: (H, W).
        face_side: Longer side of the landmark box in the frames, pixels.
        noise_std: Sensor noise std (grey levels).
        seed: Background / noise seed.

    Returns:
        (frames uint8 [T, H, W, 3], truth float32 [T, K, 2]) as `render_face`.
    """
    lo, hi = face_box(landmarks)[:2], face_box(landmarks)[2:]
    m = _similarity((lo + hi) / 2, (size[1] / 2 - 0.5, size[0] / 2 - 0.5), face_side / float(np.max(hi - lo)), 0.0)
    return render_face(face, landmarks, np.repeat(m[None], num_frames, 0), size, noise_std, seed)


def moving_face_video(face, landmarks, num_frames: int = 150, fps: float = 30.0, size=(480, 640),
                      face_side: float = 160.0, pan: tuple[float, float] = (150.0, 60.0), zoom: float = 0.25,
                      rotation_deg: float = 20.0, noise_std: float = 3.0, seed: int = 0):
    """A face that pans (x period 4 s, y 6 s), zooms (+-`zoom`, 3 s) and rotates (+-`rotation_deg`, 5 s).

    Motion is a sum of sines starting at rest in the centre, so speed and
    acceleration are smooth and known (peak pan speed ~ 2 pi pan_x / 4 s).

    Args:
        face, landmarks: The face crop and its [K, 2] landmarks.
        num_frames, fps: Length and rate of the clip.
        size: (H, W).
        face_side: Landmark-box side at zoom 1, pixels.
        pan: (x, y) amplitudes in pixels.
        zoom: Relative zoom amplitude.
        rotation_deg: Rotation amplitude.
        noise_std: Sensor noise std (grey levels).
        seed: Background / noise seed.

    Returns:
        (frames uint8 [T, H, W, 3], truth float32 [T, K, 2]) as `render_face`.
    """
    lo, hi = face_box(landmarks)[:2], face_box(landmarks)[2:]
    base = face_side / float(np.max(hi - lo))
    t = np.arange(num_frames) / fps
    centre = np.array([size[1] / 2 - 0.5, size[0] / 2 - 0.5])
    matrices = [
        _similarity(
            (lo + hi) / 2,
            centre + np.array([pan[0] * np.sin(2 * np.pi * s / 4.0), pan[1] * np.sin(2 * np.pi * s / 6.0)]),
            base * (1 + zoom * np.sin(2 * np.pi * s / 3.0)),
            rotation_deg * np.sin(2 * np.pi * s / 5.0),
        )
        for s in t
    ]
    return render_face(face, landmarks, np.stack(matrices), size, noise_std, seed)
