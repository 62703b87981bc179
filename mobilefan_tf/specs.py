"""Landmark layouts of the supported datasets, and custom ones.

One `LandmarkSpec` per dataset (PIPNet style): how many points, which pair of
points normalises the NME, how indices swap under a horizontal flip, which
points belong to which facial part (for drawing), and how the dataset's
published files count pixels (``index_base``). All indices are 0-based.

A custom layout is a small JSON (or TOML) file, see `load_spec_file`::

    {"name": "five", "num_points": 5, "flip_pairs": [[0, 1], [3, 4]],
     "norm_points": [0, 1], "names": ["eye_l", "eye_r", "nose", "mouth_l", "mouth_r"]}

or a COCO keypoints JSON (`mobilefan_tf.data.coco`). `get_spec` accepts a
name, a point count, a `LandmarkSpec`, its `to_dict` form or such a file.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

NORM_NAMES = ("inter_ocular", "inter_pupil", "bbox_diagonal")


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
        point_names: Optional name of each point, [K].
        index_base: Pixel index of the first pixel centre in the dataset's
            published landmark files: 1 for 300W ``.pts`` and COFW ``.mat``
            (MATLAB), 0 for WFLW and for custom sets unless their spec says so.
            Readers subtract it.

    Raises:
        ValueError: (one line) when indices are out of range or the flip pairs
            are not an involution (an index in two pairs, or paired with itself).
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
    point_names: tuple[str, ...] | None = None
    index_base: int = 0

    def __post_init__(self):
        k = self.num_points
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"spec {self.name!r}: num_points must be a positive integer, got {k!r}")

        def check(indices, what):
            for i in indices:
                if not isinstance(i, (int, np.integer)) or not 0 <= i < k:
                    raise ValueError(f"spec {self.name!r}: {what} index {i!r} is out of range 0..{k - 1}")

        check(self.eye_outer, "normalisation point")
        if len(self.eye_outer) != 2 or self.eye_outer[0] == self.eye_outer[1]:
            raise ValueError(f"spec {self.name!r}: needs two different normalisation points, got {self.eye_outer}")
        check(self.pupils or (), "pupil")
        for contour in self.eye_contours or ():
            check(contour, "eye contour")
        seen: dict[int, tuple[int, int]] = {}
        for pair in self.flip_pairs:
            if len(pair) != 2:
                raise ValueError(f"spec {self.name!r}: flip pair {pair} must have two indices")
            check(pair, "flip pair")
            if pair[0] == pair[1]:
                raise ValueError(f"spec {self.name!r}: flip pair {tuple(pair)} pairs a point with itself")
            for i in pair:
                if i in seen:
                    raise ValueError(
                        f"spec {self.name!r}: flip pairs are not a permutation: point {i} is in both "
                        f"{seen[i]} and {tuple(pair)}"
                    )
                seen[i] = tuple(pair)
        for group, idx in self.groups.items():
            check(idx, f"group {group!r}")
        if self.point_names is not None and len(self.point_names) != k:
            raise ValueError(f"spec {self.name!r}: {len(self.point_names)} names for {k} points")
        if self.default_norm not in NORM_NAMES:
            raise ValueError(f"spec {self.name!r}: unknown default_norm {self.default_norm!r} (use one of {NORM_NAMES})")
        if self.default_norm == "inter_pupil" and self.pupils is None and self.eye_contours is None:
            raise ValueError(f"spec {self.name!r}: inter_pupil NME needs pupils or eye_contours")
        if self.index_base not in (0, 1):
            raise ValueError(f"spec {self.name!r}: index_base must be 0 or 1, got {self.index_base!r}")

    @property
    def is_builtin(self) -> bool:
        """True for the shipped 300W / WFLW / COFW layouts (saved by name)."""
        return SPECS.get(self.name) is self

    def to_dict(self) -> dict:
        """JSON-ready form (lists, not tuples); `from_dict` / `get_spec` rebuild it."""
        out = dataclasses.asdict(self)
        out["groups"] = {k: list(v) for k, v in self.groups.items()}
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, data: dict) -> LandmarkSpec:
        """Builds a spec from `to_dict` output or a spec file's fields (see `load_spec_file`)."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)} | {"norm_points", "names", "flip_permutation"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown spec field(s) {unknown} (known: {sorted(known)})")
        if "num_points" not in data:
            raise ValueError("spec has no 'num_points'")
        k = data["num_points"]
        norm = data.pop("norm_points", None)
        if norm is not None:
            data["eye_outer"] = norm
        if "eye_outer" not in data:
            raise ValueError("spec has no 'norm_points' (the two points whose distance normalises the NME)")
        if "names" in data:
            data["point_names"] = data.pop("names")
        if "flip_permutation" in data:
            data["flip_pairs"] = _pairs_from_permutation(data.pop("flip_permutation"), k)
        data.setdefault("name", "custom")
        data.setdefault("pupils", None)
        data.setdefault("eye_contours", None)
        data.setdefault("flip_pairs", ())
        data.setdefault("groups", {"points": list(range(k))} if isinstance(k, int) else {})

        def ints(v):
            return tuple(int(i) if isinstance(i, (int, np.integer)) else i for i in v)

        data["eye_outer"] = ints(data["eye_outer"])
        data["flip_pairs"] = tuple(ints(p) for p in data["flip_pairs"])
        if data["pupils"] is not None:
            data["pupils"] = ints(data["pupils"])
        if data["eye_contours"] is not None:
            data["eye_contours"] = tuple(ints(c) for c in data["eye_contours"])
        data["groups"] = {str(g): ints(v) for g, v in data["groups"].items()}
        data["closed_groups"] = tuple(data.get("closed_groups", ()))
        if data.get("point_names") is not None:
            data["point_names"] = tuple(str(n) for n in data["point_names"])
        builtin = SPECS.get(data["name"])
        spec = cls(**data)
        if builtin == spec:
            return builtin
        if _CUSTOM.get(spec.name) == spec:
            return _CUSTOM[spec.name]
        _CUSTOM[spec.name] = spec  # so that get_spec(name) finds it in this process (metrics, configs)
        return spec

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
    index_base=1,
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
    index_base=1,
)

SPECS: dict[str, LandmarkSpec] = {s.name: s for s in (W300, WFLW, COFW)}
_CUSTOM: dict[str, LandmarkSpec] = {}  # custom specs built in this process, by name


def _pairs_from_permutation(perm, k) -> list[tuple[int, int]]:
    """Flip pairs of a full [K] flip permutation; raises unless it is an involution."""
    perm = [int(i) for i in perm]
    if len(perm) != k or sorted(perm) != list(range(k)):
        raise ValueError(f"flip_permutation must list each of 0..{k - 1} once, got {perm}")
    bad = [i for i in range(k) if perm[perm[i]] != i]
    if bad:
        i = bad[0]
        raise ValueError(f"flip_permutation is not an involution: {i} -> {perm[i]} -> {perm[perm[i]]}")
    return [(i, p) for i, p in enumerate(perm) if i < p]


def load_spec_file(path: str | os.PathLike) -> LandmarkSpec:
    """Reads a custom landmark layout, or the layout of a COCO keypoints JSON.

    A spec file is JSON (or TOML for a ``.toml`` name) with the fields
    ``num_points``, ``norm_points`` (two indices: their distance normalises
    the NME, e.g. the outer eye corners), ``flip_pairs`` (list of [left, right]
    swapped by a horizontal flip; or ``flip_permutation``, a full [K] list)
    and optionally ``name``, ``names`` (one per point), ``pupils``,
    ``groups`` (part -> indices, for drawing), ``default_norm`` and
    ``index_base`` (0 or 1: how the set's ``.pts`` files count pixels; 0 by
    default).

    Raises:
        ValueError: one line ``<path>: <problem>``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: spec file does not exist")
    try:
        if path.endswith(".toml"):
            import tomllib

            with open(path, "rb") as f:
                data = tomllib.load(f)
        else:
            with open(path) as f:
                data = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable spec file ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a spec file holds one JSON object")
    if "categories" in data or "annotations" in data:
        from mobilefan_tf.data.coco import coco_spec

        return coco_spec(data, path)
    data.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    try:
        return LandmarkSpec.from_dict(data)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {' '.join(str(err).split())}") from None


def spec_config(spec: str | int | LandmarkSpec | dict | None) -> str | dict | None:
    """What a model config stores: the name of a built-in spec, else its full `to_dict`."""
    if spec is None:
        return None
    spec = get_spec(spec)
    return spec.name if spec.is_builtin else spec.to_dict()


def model_spec(model) -> LandmarkSpec:
    """The layout a model was trained for: its ``spec`` config or metadata, else the one with its K."""
    spec = getattr(model, "spec", None)
    if spec is None:
        spec = (getattr(model, "metadata", None) or {}).get("spec")
    if spec is None and getattr(model, "num_keypoints", None) is None:
        raise ValueError(f"{type(model).__name__} names no landmark layout (no spec, metadata or num_keypoints)")
    return get_spec(spec if spec is not None else int(model.num_keypoints))


def get_spec(name_or_k: str | int | LandmarkSpec | dict | os.PathLike) -> LandmarkSpec:
    """Looks up a spec.

    Args:
        name_or_k: A dataset name (``"300w"``, ``"wflw"``, ``"cofw"``), a
            point count (68), a `LandmarkSpec`, a `LandmarkSpec.to_dict`
            dict, or the path of a spec file / COCO keypoints JSON.
    """
    if isinstance(name_or_k, LandmarkSpec):
        return name_or_k
    if isinstance(name_or_k, dict):
        return LandmarkSpec.from_dict(name_or_k)
    if isinstance(name_or_k, os.PathLike) or (isinstance(name_or_k, str) and os.path.isfile(name_or_k)):
        return load_spec_file(name_or_k)
    if isinstance(name_or_k, (int, np.integer)):
        for spec in SPECS.values():
            if spec.num_points == int(name_or_k):
                return spec
        known = sorted(s.num_points for s in SPECS.values())
        raise ValueError(f"No landmark spec has {name_or_k} points (known: {known})")
    key = str(name_or_k).lower().replace("-", "")
    if key not in SPECS and str(name_or_k) in _CUSTOM:
        return _CUSTOM[str(name_or_k)]
    if key not in SPECS:
        raise ValueError(f"Unknown landmark spec {name_or_k!r} (known: {sorted(SPECS)}, or a spec file path)")
    return SPECS[key]


def check_num_points(num_points: int, spec: str | int | LandmarkSpec | dict | None) -> None:
    """Raises a clear error when K does not match the named spec."""
    if spec is None:
        return
    spec = get_spec(spec)
    if spec.num_points != num_points:
        raise ValueError(
            f"num_keypoints={num_points} does not match spec {spec.name!r}, "
            f"which has {spec.num_points} points"
        )
