"""Procedural cartoon faces with exact iBUG-68 landmarks.

Each face is drawn in a canonical frame (face ellipse centred at the origin
with semi-axes 1 x 1.3, y pointing down) and mapped to the image with one
random affine (rotation, scale, translation, horizontal squeeze for mild yaw).
Landmarks are the same canonical points mapped by the same affine, so they lie
exactly on the drawn features: jaw points on the face outline, eye points on
the eye contours, lip points on the lip contours. Point 0 / eye 36-41 / brow
17-21 are on the image-left side, matching `specs.W300.flip_pairs`.
"""

from __future__ import annotations

import cv2
import numpy as np

_RX, _RY = 1.0, 1.3
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing at 1/16 px.


def _jaw() -> np.ndarray:
    delta = 0.2  # Jaw starts a little above the ellipse's horizontal axis.
    phi = (np.pi + delta) - np.arange(17) * (np.pi + 2 * delta) / 16
    return np.stack([_RX * np.cos(phi), _RY * np.sin(phi)], axis=1)


def _mirror(points: np.ndarray) -> np.ndarray:
    return points * np.array([-1.0, 1.0])


def _template(rng: np.random.Generator) -> np.ndarray:
    """Canonical [68, 2] landmarks with random expression/shape jitter."""
    brow_h = -0.55 + rng.uniform(-0.05, 0.05)
    brow_x = np.linspace(-0.72, -0.16, 5)
    brow_l = np.stack([brow_x, brow_h - 0.1 * np.sin(np.linspace(0.3, np.pi - 0.3, 5))], 1)
    brow_r = _mirror(brow_l)[::-1]  # 22 (inner) ... 26 (outer)
    bridge = np.stack([np.zeros(4), np.linspace(-0.32, 0.08, 4)], 1)
    nose_w = rng.uniform(0.15, 0.22)
    base = np.stack([np.linspace(-nose_w, nose_w, 5), 0.18 + np.array([0.0, 0.03, 0.05, 0.03, 0.0])], 1)
    eye_h = rng.uniform(0.06, 0.11)
    eye_y = -0.28
    # 36 outer corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid.
    eye_l = np.array(
        [[-0.62, eye_y], [-0.5, eye_y - eye_h], [-0.32, eye_y - eye_h], [-0.2, eye_y],
         [-0.32, eye_y + 0.7 * eye_h], [-0.5, eye_y + 0.7 * eye_h]]
    )
    eye_r = _mirror(eye_l)[[3, 2, 1, 0, 5, 4]]  # 42 inner, 43-44 upper, 45 outer, 46-47 lower
    mw, my, opening = rng.uniform(0.3, 0.42), rng.uniform(0.5, 0.58), rng.uniform(0.0, 0.12)
    ux = np.array([-1.0, -0.6, -0.25, 0.0, 0.25, 0.6, 1.0]) * mw
    upper = np.stack([ux, my - np.array([0, 0.07, 0.1, 0.08, 0.1, 0.07, 0])], 1)  # 48-54
    lower = np.stack([ux[5:0:-1], my + opening + np.array([0.08, 0.13, 0.14, 0.13, 0.08])], 1)  # 55-59
    ix = np.array([-0.8, -0.3, 0.0, 0.3, 0.8]) * mw
    inner_up = np.stack([ix, my - np.array([0, 0.03, 0.025, 0.03, 0])], 1)  # 60-64
    inner_lo = np.stack([ix[3:0:-1], my + opening + np.array([0.03, 0.035, 0.03])], 1)  # 65-67
    pts = np.concatenate([_jaw(), brow_l, brow_r, bridge, base, eye_l, eye_r, upper, lower, inner_up, inner_lo])
    # Mild yaw: inner features shift sideways inside the outline.
    pts[17:, 0] += rng.uniform(-0.12, 0.12)
    return pts


def _random_affine(rng: np.random.Generator, size: int) -> np.ndarray:
    angle = np.deg2rad(rng.uniform(-25, 25))
    scale = size * rng.uniform(0.22, 0.3)
    squeeze = rng.uniform(0.8, 1.0)
    c, s = np.cos(angle), np.sin(angle)
    lin = scale * np.array([[c, -s], [s, c]]) @ np.diag([squeeze, 1.0])
    centre = size / 2.0 - 0.5 + rng.uniform(-0.08, 0.08, 2) * size
    return np.concatenate([lin, centre[:, None]], axis=1)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixel-centre coords -> int32 cv2 fixed-point coordinates."""
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def _poly(img, pts, color, thickness=1, closed=False, fill=False):
    p = [_fixed(pts).reshape(-1, 1, 2)]
    if fill:
        cv2.fillPoly(img, p, color, cv2.LINE_AA, _SHIFT)
    else:
        cv2.polylines(img, p, closed, color, thickness, cv2.LINE_AA, _SHIFT)


def _background(img: np.ndarray, rng: np.random.Generator) -> None:
    size = img.shape[0]
    img[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    for _ in range(rng.integers(3, 9)):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        a, b = rng.integers(0, size, 2), rng.integers(0, size, 2)
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, tuple(int(v) for v in a), tuple(int(v) for v in b), color, -1)
        elif kind == 1:
            cv2.circle(img, tuple(int(v) for v in a), int(rng.integers(4, size // 4)), color, -1, cv2.LINE_AA)
        else:
            cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), color, int(rng.integers(1, 6)), cv2.LINE_AA)


def draw_face(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One random face: uint8 [size, size, 3] RGB and float32 [68, 2] landmarks."""
    img = np.empty((size, size, 3), np.uint8)
    _background(img, rng)
    canon = _template(rng)
    m = _random_affine(rng, size)
    to_img = lambda p: p @ m[:, :2].T + m[:, 2]  # noqa: E731
    lm = to_img(canon)
    unit = np.sqrt(abs(np.linalg.det(m[:, :2])))  # pixels per canonical unit
    width = lambda w: max(1, int(round(w * unit)))  # noqa: E731

    t = np.linspace(0, 2 * np.pi, 181)[:-1]
    outline = to_img(np.stack([_RX * np.cos(t), _RY * np.sin(t)], 1))
    skin = np.array([rng.uniform(150, 245), rng.uniform(110, 200), rng.uniform(80, 170)]) * rng.uniform(0.6, 1.05)
    skin = tuple(float(v) for v in np.clip(skin, 0, 255))
    dark = tuple(float(v) for v in np.array(skin) * 0.35)
    _poly(img, outline, skin, fill=True)
    # Hair cap above the brows (never covers a landmark).
    top = t[np.sin(t) < -0.62]  # Arc of the outline above the brows, closed by its chord.
    hair = to_img(np.stack([_RX * np.cos(top), _RY * np.sin(top)], 1))
    _poly(img, hair, tuple(float(v) for v in rng.integers(0, 120, 3)), fill=True)
    _poly(img, outline, dark, width(0.03), closed=True)
    for brow in (lm[17:22], lm[22:27]):
        _poly(img, brow, dark, width(0.07))
    _poly(img, lm[27:31], dark, width(0.03))
    _poly(img, lm[31:36], dark, width(0.035))
    iris = tuple(float(v) for v in rng.integers(20, 120, 3))
    for eye in (lm[36:42], lm[42:48]):
        _poly(img, eye, (245, 245, 245), fill=True)
        centre = eye.mean(axis=0)
        cv2.circle(img, tuple(int(v) for v in _fixed(centre)), int(0.055 * unit * (1 << _SHIFT)), iris, -1, cv2.LINE_AA, _SHIFT)
        _poly(img, eye, (20, 20, 20), width(0.025), closed=True)
    lip = (float(rng.uniform(150, 220)), float(rng.uniform(40, 100)), float(rng.uniform(50, 110)))
    _poly(img, lm[48:60], lip, fill=True)
    inner = np.concatenate([lm[60:65], lm[65:68]])
    _poly(img, inner, (60, 20, 30), fill=True)
    _poly(img, lm[48:60], tuple(v * 0.6 for v in lip), width(0.02), closed=True)
    return img, lm.astype(np.float32)


def synthetic_faces(num: int, image_size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draws `num` random faces.

    Args:
        num: N, number of faces.
        image_size: S, square image side.
        seed: Same seed, same faces.

    Returns:
        images: uint8 [N, S, S, 3] RGB.
        landmarks: float32 [N, 68, 2] iBUG-68 (x, y), 0-based pixel centres.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((num, image_size, image_size, 3), np.uint8)
    landmarks = np.empty((num, 68, 2), np.float32)
    for i in range(num):
        images[i], landmarks[i] = draw_face(rng, image_size)
    return images, landmarks


# Non-68 layouts derived from the same faces (custom-spec tests and examples):
# every derived point is a fixed average of iBUG-68 points, so it lies on
# the drawn features exactly as the 68 do.
def _layout_weights(layout: str) -> tuple[np.ndarray, list[str]]:
    def avg(*idx):
        row = np.zeros(68)
        row[list(idx)] = 1.0 / len(idx)
        return row

    if layout == "5":  # eye centres (the drawn irises), nose tip, mouth corners
        rows = [avg(*range(36, 42)), avg(*range(42, 48)), avg(30), avg(48), avg(54)]
        return np.stack(rows), ["left_eye", "right_eye", "nose", "left_mouth", "right_mouth"]
    if layout == "98":  # the 68, jaw-segment and eye-contour midpoints, pupils
        rows = [avg(i) for i in range(68)]
        rows += [avg(i, i + 1) for i in range(16)]
        for eye in (range(36, 42), range(42, 48)):
            e = list(eye)
            rows += [avg(e[i], e[(i + 1) % 6]) for i in range(6)]
        rows += [avg(*range(36, 42)), avg(*range(42, 48))]
        return np.stack(rows), [f"p{i}" for i in range(98)]
    raise ValueError(f"unknown derived layout {layout!r} (use '5' or '98')")


def derived_layout(layout: str):
    """A non-68 landmark layout defined on the synthetic faces.

    Args:
        layout: ``"5"`` (eye centres, nose tip, mouth corners) or ``"98"``
            (the 68, 16 jaw and 12 eye-contour midpoints, 2 pupils).

    Returns:
        (spec, weights): a custom `LandmarkSpec` whose flip pairs follow from
        the 300W ones, and float64 [K, 68] with ``landmarks_K = weights @ landmarks_68``.
    """
    from mobilefan_tf.specs import W300, LandmarkSpec

    weights, names = _layout_weights(layout)
    perm68 = W300.flip_permutation
    perm = []
    for row in weights:
        mirrored = np.zeros(68)
        mirrored[perm68] = row  # the mirrored face's point = this mix of the original's mirrored points
        perm.append(int(np.flatnonzero(np.all(np.isclose(weights, mirrored), axis=1))[0]))
    k = len(weights)
    norm = (0, 1) if layout == "5" else (36, 45)
    spec = LandmarkSpec.from_dict({
        "name": f"synthetic{k}", "num_points": k, "norm_points": list(norm), "names": names, "flip_permutation": perm,
    })
    return spec, weights


def synthetic_faces_layout(num: int, layout: str, image_size: int = 256, seed: int = 0):
    """`synthetic_faces` with landmarks in a `derived_layout`: images, [N, K, 2] landmarks, spec."""
    spec, weights = derived_layout(layout)
    images, lm68 = synthetic_faces(num, image_size, seed)
    return images, np.einsum("kj,njc->nkc", weights, lm68).astype(np.float32), spec
