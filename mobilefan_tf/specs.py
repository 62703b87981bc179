"""Landmark layouts of the supported datasets.

One `LandmarkSpec` per dataset (PIPNet style): how many points, which pair of
points normalises the NME, how indices swap under a horizontal flip, and which
points belong to which facial part (for drawing). All indices are 0-based.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LandmarkSpec:
    """Describes one landmark layout.

    Attributes:
        name: Dataset name, e.g. ``"300w"``.
        num_points: K, the number of landmarks.
        eye_outer: Indices of the two outer eye corners (inter-ocular NME).
        pupils: Indices of the two pupils (inter-pupil NME), or None where the
            layout has no pupil points (300W: pupils are then the eye-contour
            centroids, see `pupil_centers`).
        eye_contours: Point indices of the two eye contours, used to estimate
            pupils where `pupils` is None.
        flip_pairs: (left, right) index pairs swapped by a horizontal flip.
        groups: Part name -> point indices, for drawing.
        default_norm: Normaliser used by default when reporting NME.
        closed_groups: Groups drawn as closed polygons.
    """

    name: str
    num_points: int
    eye_outer: tuple[int, int]
    pupils: tuple[int, int] | None
    eye_contours: tuple[tuple[int, ...], tuple[int, ...]] | None
    flip_pairs: tuple[tuple[int, int], ...]
    groups: dict[str, tuple[int, ...]]
    default_norm: str = "inter_ocular"
    closed_groups: tuple[str, ...] = ()

    @property
    def flip_permutation(self) -> np.ndarray:
        """[K] int array: index i of a flipped face holds point perm[i]."""
        perm = np.arange(self.num_points)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def pupil_centers(self, landmarks: np.ndarray) -> np.ndarray:
        """Pupil positions, [..., 2, 2] (left, right) x (x, y)."""
        landmarks = np.asarray(landmarks)
        if self.pupils is not None:
            return landmarks[..., list(self.pupils), :]
        if self.eye_contours is None:
            raise ValueError(f"{self.name}: no pupils or eye contours defined")
        left = landmarks[..., list(self.eye_contours[0]), :].mean(axis=-2)
        right = landmarks[..., list(self.eye_contours[1]), :].mean(axis=-2)
        return np.stack([left, right], axis=-2)


def _mirror_pairs(first: int, last: int) -> list[tuple[int, int]]:
    """Pairs (first, last), (first+1, last-1), ... of a symmetric contour."""
    pairs = []
    while first < last:
        pairs.append((first, last))
        first, last = first + 1, last - 1
    return pairs


# iBUG 68: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67.
W300 = LandmarkSpec(
    name="300w",
    num_points=68,
    eye_outer=(36, 45),
    pupils=None,
    eye_contours=(tuple(range(36, 42)), tuple(range(42, 48))),
    flip_pairs=tuple(
        _mirror_pairs(0, 16)
        + _mirror_pairs(17, 26)
        + [(31, 35), (32, 34)]
        + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
        + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
        + [(60, 64), (61, 63), (65, 67)]
    ),
    groups={
        "jaw": tuple(range(0, 17)),
        "brow_left": tuple(range(17, 22)),
        "brow_right": tuple(range(22, 27)),
        "nose_bridge": tuple(range(27, 31)),
        "nose_base": tuple(range(31, 36)),
        "eye_left": tuple(range(36, 42)),
        "eye_right": tuple(range(42, 48)),
        "mouth_outer": tuple(range(48, 60)),
        "mouth_inner": tuple(range(60, 68)),
    },
    closed_groups=("eye_left", "eye_right", "mouth_outer", "mouth_inner"),
)

# WFLW 98: jaw 0-32, brows 33-50, nose 51-59, eyes 60-75, mouth 76-95,
# pupils 96-97. Flip pairs as in the public WFLW tooling (HRNet, PIPNet).
WFLW = LandmarkSpec(
    name="wflw",
    num_points=98,
    eye_outer=(60, 72),
    pupils=(96, 97),
    eye_contours=(tuple(range(60, 68)), tuple(range(68, 76))),
    flip_pairs=tuple(
        _mirror_pairs(0, 32)
        + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42)]
        + [(38, 50), (39, 49), (40, 48), (41, 47)]
        + [(55, 59), (56, 58)]
        + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68)]
        + [(65, 75), (66, 74), (67, 73)]
        + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]
        + [(88, 92), (89, 91), (93, 95), (96, 97)]
    ),
    groups={
        "jaw": tuple(range(0, 33)),
        "brow_left": tuple(range(33, 42)),
        "brow_right": tuple(range(42, 51)),
        "nose_bridge": tuple(range(51, 55)),
        "nose_base": tuple(range(55, 60)),
        "eye_left": tuple(range(60, 68)),
        "eye_right": tuple(range(68, 76)),
        "mouth_outer": tuple(range(76, 88)),
        "mouth_inner": tuple(range(88, 96)),
        "pupils": (96, 97),
    },
    closed_groups=("brow_left", "brow_right", "eye_left", "eye_right", "mouth_outer", "mouth_inner"),
)

# COFW 29 (Burgos-Artizzu et al.): brows 0-7, eye corners 8-11, eyelids
# 12-15, pupils 16-17, nose 18-21, mouth 22-27, chin 28. Flip pairs as in the
# public COFW tooling (HRNet); COFW is reported with inter-pupil NME.
COFW = LandmarkSpec(
    name="cofw",
    num_points=29,
    eye_outer=(8, 9),
    pupils=(16, 17),
    eye_contours=None,
    flip_pairs=(
        (0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15),
        (16, 17), (18, 19), (22, 23),
    ),
    groups={
        "brows": tuple(range(0, 8)),
        "eyes": tuple(range(8, 18)),
        "nose": tuple(range(18, 22)),
        "mouth": tuple(range(22, 28)),
        "chin": (28,),
    },
    default_norm="inter_pupil",
)

SPECS: dict[str, LandmarkSpec] = {s.name: s for s in (W300, WFLW, COFW)}


def get_spec(name_or_k: str | int | LandmarkSpec) -> LandmarkSpec:
    """Looks up a spec by dataset name (``"300w"``) or by point count (68)."""
    if isinstance(name_or_k, LandmarkSpec):
        return name_or_k
    if isinstance(name_or_k, (int, np.integer)):
        for spec in SPECS.values():
            if spec.num_points == int(name_or_k):
                return spec
        known = sorted(s.num_points for s in SPECS.values())
        raise ValueError(f"No landmark spec has {name_or_k} points (known: {known})")
    key = str(name_or_k).lower().replace("-", "")
    if key not in SPECS:
        raise ValueError(f"Unknown landmark spec {name_or_k!r} (known: {sorted(SPECS)})")
    return SPECS[key]


def check_num_points(num_points: int, spec: str | int | LandmarkSpec | None) -> None:
    """Raises a clear error when K does not match the named spec."""
    if spec is None:
        return
    spec = get_spec(spec)
    if spec.num_points != num_points:
        raise ValueError(
            f"num_keypoints={num_points} does not match spec {spec.name!r}, "
            f"which has {spec.num_points} points"
        )
