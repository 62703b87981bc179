"""COCO keypoints JSON: a landmark layout and its annotated faces from one file.

The file is the COCO ``person_keypoints`` format: ``categories[0]`` names the
keypoints (``"keypoints": [name, ...]``), ``images`` lists ``{id,
file_name}`` and each of ``annotations`` holds ``image_id``, ``keypoints``
(K triplets x, y, v) and optionally ``bbox`` (x, y, w, h).

The layout (`coco_spec`): flip pairs are the names that differ only by
``left``/``right`` (``left_eye`` <-> ``right_eye``, ``eye_l`` <-> ``eye_r``);
the normalisation points are ``left_eye``/``right_eye`` (or the outer eye
corners) unless the category says ``"norm_points": [i, j]``; a category may
also list ``"flip_pairs"`` explicitly. Coordinates are read as published
(0-based pixel centres).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from mobilefan_tf.data.readers import FaceSample, SampleList, _Collector, check_image_file, check_landmarks
from mobilefan_tf.specs import LandmarkSpec

# Name pairs tried, in order, as the two normalisation points.
_NORM_CANDIDATES = (("left_eye_outer", "right_eye_outer"), ("left_eye", "right_eye"), ("eye_l", "eye_r"))
_SIDES = ((r"left", "right"), (r"l", "r"))


def _load(path: str | os.PathLike) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable COCO JSON ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a COCO JSON holds one object with images, annotations, categories")
    return data


def _mirror_name(name: str) -> str | None:
    """``left_eye`` -> ``right_eye``, ``eye_l`` -> ``eye_r``; None when the name has no side."""
    for a, b in _SIDES:
        for x, y in ((a, b), (b, a)):
            pattern = rf"(^|[_\-. ]){x}($|[_\-. ])"
            if re.search(pattern, name, flags=re.IGNORECASE):
                return re.sub(pattern, lambda m, y=y: f"{m.group(1)}{y}{m.group(2)}", name, count=1, flags=re.IGNORECASE)
    return None


def coco_spec(data: dict | str | os.PathLike, path: str | os.PathLike | None = None) -> LandmarkSpec:
    """The landmark layout of a COCO keypoints JSON (its first category with keypoints).

    Args:
        data: The parsed JSON, or its path.
        path: File named in errors (default: `data` when it is a path).

    Raises:
        ValueError: one line ``<path>: <problem>`` (no keypoints, no
            normalisation points, flip pairs not a permutation).
    """
    if not isinstance(data, dict):
        path, data = data, _load(data)
    where = path or "COCO JSON"
    cats = [c for c in data.get("categories") or () if isinstance(c, dict) and c.get("keypoints")]
    if not cats:
        raise ValueError(f"{where}: COCO JSON has no keypoints (no category lists 'keypoints')")
    cat = cats[0]
    names = [str(n) for n in cat["keypoints"]]
    index = {n.lower(): i for i, n in enumerate(names)}
    if "flip_pairs" in cat:
        pairs = [tuple(int(i) for i in p) for p in cat["flip_pairs"]]
    else:
        pairs = []
        for i, n in enumerate(names):
            other = _mirror_name(n)
            j = index.get(other.lower()) if other else None
            if j is not None and i < j:
                pairs.append((i, j))
    norm = cat.get("norm_points")
    if norm is None:
        norm = next(([index[a], index[b]] for a, b in _NORM_CANDIDATES if a in index and b in index), None)
    if norm is None:
        raise ValueError(
            f"{where}: cannot tell the NME normalisation points: name two keypoints left_eye/right_eye "
            "or add \"norm_points\": [i, j] to the category"
        )
    fields = {
        "name": str(cat.get("name") or Path(os.fspath(where)).stem), "num_points": len(names), "names": names,
        "flip_pairs": pairs, "norm_points": norm, "index_base": 0,
    }
    try:
        return LandmarkSpec.from_dict(fields)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {' '.join(str(err).split())}") from None


def read_coco_keypoints(
    path: str | os.PathLike, images_root: str | os.PathLike | None = None, skip_bad: bool = False
) -> SampleList:
    """Reads the annotated faces of a COCO keypoints JSON.

    Args:
        path: The JSON file.
        images_root: Folder the ``file_name``s are relative to (default: the
            JSON's folder, then its ``images/`` subfolder).
        skip_bad: Drop bad faces (listed in ``.skipped``) instead of raising.

    Returns:
        `SampleList` sorted by name (``"<file_name without suffix>#<annotation id>"``);
        landmarks float32 [K, 2] (x, y) 0-based pixel centres; box (x0, y0, x1,
        y1) from ``bbox`` when present. Keypoints with v = 0 (not labelled) make
        a face bad: the training losses have no per-point mask.

    Raises:
        ValueError: one line naming the file and the problem.
    """
    data = _load(path)
    spec = coco_spec(data, path)
    k = spec.num_points
    if images_root is None:
        base = Path(path).parent
        images_root = base / "images" if (base / "images").is_dir() else base
    images = {im.get("id"): im.get("file_name") for im in data.get("images") or () if isinstance(im, dict)}
    annotations = [a for a in data.get("annotations") or () if isinstance(a, dict) and "keypoints" in a]
    if not annotations:
        raise ValueError(f"{path}: COCO JSON has no annotations with keypoints")
    collect = _Collector(skip_bad, f"read_coco_keypoints({path})")
    samples = []
    for n, ann in enumerate(annotations):
        where = f"{path}: annotation {ann.get('id', n)}"
        file_name = images.get(ann.get("image_id"))
        if file_name is None:
            collect.bad(where, f"image_id {ann.get('image_id')!r} is not in 'images'")
            continue
        values = np.asarray(ann["keypoints"], np.float32).ravel()
        if values.size != 3 * k:
            collect.bad(where, f"expected {k} keypoints (x, y, v triplets), found {values.size / 3:g}")
            continue
        triplets = values.reshape(k, 3)
        landmarks = triplets[:, :2].copy()
        unlabelled = int(np.sum(triplets[:, 2] <= 0))
        problem = check_landmarks(landmarks, k) or (f"{unlabelled} keypoint(s) are not labelled (v=0)" if unlabelled else None)
        if problem:
            collect.bad(where, problem)
            continue
        image_path = Path(images_root) / file_name
        problem = check_image_file(image_path)
        if problem:
            collect.bad(image_path, problem)
            continue
        box = None
        if ann.get("bbox") and len(ann["bbox"]) == 4:
            x, y, w, h = (float(v) for v in ann["bbox"])
            box = np.array([x, y, x + w, y + h], np.float32)
        name = f"{Path(file_name).with_suffix('').as_posix()}#{ann.get('id', n)}"
        samples.append(FaceSample(name, str(image_path), None, landmarks, box, {}))
    samples.sort(key=lambda s: s.name)
    return collect.result(samples)


def write_coco_keypoints(path: str | os.PathLike, samples, spec: LandmarkSpec, images_root: str | os.PathLike) -> str:
    """Writes `FaceSample`s (with ``image_path`` files) as a COCO keypoints JSON; returns `path`.

    Image file names are stored relative to `images_root`; every point is
    written visible (v = 2). The category carries the spec's ``norm_points``
    and ``flip_pairs`` so the file round-trips through `coco_spec`.
    """
    images, annotations = [], []
    for i, s in enumerate(samples):
        rel = os.path.relpath(s.image_path, images_root)
        images.append({"id": i, "file_name": Path(rel).as_posix()})
        kp = np.concatenate([np.asarray(s.landmarks, np.float64), np.full((spec.num_points, 1), 2.0)], 1)
        annotations.append({"id": i, "image_id": i, "category_id": 1, "keypoints": kp.ravel().round(3).tolist(),
                            "num_keypoints": spec.num_points})
    names = list(spec.point_names or [f"p{i}" for i in range(spec.num_points)])
    category = {"id": 1, "name": spec.name, "keypoints": names, "norm_points": list(spec.eye_outer),
                "flip_pairs": [list(p) for p in spec.flip_pairs]}
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": [category]}, f)
    return os.fspath(path)
