"""Readers for the 300W, WFLW and COFW annotation formats.

Every reader returns `FaceSample`s whose landmarks are float32 [K, 2] (x, y)
in 0-based pixel-centre coordinates of the original image (see
`mobilefan_tf.heatmaps`). Published 300W and COFW files are 1-based
(MATLAB convention), so 1 is subtracted by default; a folder whose files are
already 0-based says so (see `folder_index_base`): a ``mobilefan_dataset.json``
marker ``{"index_base": 0}``, or a README stating "0-based" (as
``shared/data/300w/README.md`` does), or pass ``index_base=0``.

Bad samples (missing or truncated image, wrong point count, non-finite
coordinates) raise one `ValueError` naming the file and the problem, or, with
``skip_bad=True``, are dropped and listed in the returned `SampleList`'s
``skipped`` attribute.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")


@dataclasses.dataclass
class FaceSample:
    """One annotated face.

    Attributes:
        name: Unique id, e.g. the image path relative to the dataset root
            without its suffix (``"300W-train/afw/1051618982_1"``).
        image_path: Image file, or None when `image` holds the pixels.
        image: uint8 [H, W, 3] RGB pixels when in memory, else None.
        landmarks: float32 [K, 2] (x, y), 0-based pixel centres of the image.
        box: float32 [4] face box (x0, y0, x1, y1) in the same frame, or None.
        attributes: Free-form per-sample metadata (subset, flags, ...).
    """

    name: str
    image_path: str | None
    image: np.ndarray | None
    landmarks: np.ndarray
    box: np.ndarray | None = None
    attributes: dict = dataclasses.field(default_factory=dict)


class SampleList(list):
    """A list of `FaceSample`s plus ``skipped``: [(file, reason)] dropped by ``skip_bad``."""

    def __init__(self, items: Iterable[FaceSample] = (), skipped: Sequence[tuple[str, str]] = ()):
        super().__init__(items)
        self.skipped: list[tuple[str, str]] = list(skipped)


def check_image_file(path: str | os.PathLike) -> str | None:
    """Cheap integrity check of a JPEG/PNG file without decoding it.

    Returns:
        None when the file looks complete, else a short reason.
    """
    path = Path(path)
    if not path.is_file():
        return "image file is missing"
    size = path.stat().st_size
    if size < 16:
        return f"image file is truncated ({size} bytes)"
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, size - 64))
        tail = f.read()
    if head[:2] == b"\xff\xd8":
        if b"\xff\xd9" not in tail:
            return "image file is truncated (JPEG end marker missing)"
    elif head == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in tail:
            return "image file is truncated (PNG IEND chunk missing)"
    else:
        return "image file is not a JPEG or PNG"
    return None


def check_landmarks(landmarks: np.ndarray, num_points: int | None) -> str | None:
    """Returns a reason when landmarks are not [num_points, 2] finite values."""
    if landmarks.ndim != 2 or landmarks.shape[1] != 2:
        return f"expected [K, 2] landmarks, got shape {landmarks.shape}"
    if num_points is not None and landmarks.shape[0] != num_points:
        return f"expected {num_points} points, found {landmarks.shape[0]}"
    if not np.all(np.isfinite(landmarks)):
        bad = int(np.sum(~np.all(np.isfinite(landmarks), axis=1)))
        return f"{bad} point(s) have non-finite (NaN/inf) coordinates"
    return None


class _Collector:
    """Raises on the first bad sample, or records it when skip_bad is set."""

    def __init__(self, skip_bad: bool, what: str):
        self.skip_bad, self.what, self.skipped = skip_bad, what, []

    def bad(self, file: str | os.PathLike, reason: str) -> None:
        if not self.skip_bad:
            raise ValueError(f"{file}: {reason}")
        self.skipped.append((str(file), reason))

    def result(self, samples: list[FaceSample]) -> SampleList:
        if self.skipped:
            logging.warning("%s: skipped %d bad sample(s), first: %s", self.what, len(self.skipped), self.skipped[0])
        return SampleList(samples, self.skipped)


def read_pts(path: str | os.PathLike, index_base: int = 0) -> np.ndarray:
    """Parses one iBUG ``.pts`` file.

    Args:
        path: File with ``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``.
        index_base: 1 when the file is 1-based (published 300W); subtracted.

    Returns:
        float32 [N, 2] as listed (N may differ from the header; callers check).

    Raises:
        ValueError: naming the file, when the layout is malformed.
    """
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    try:
        start, end = lines.index("{"), lines.index("}")
        header = dict(ln.split(":", 1) for ln in lines[:start])
        declared = int(header["n_points"])
        points = np.array([[float(v) for v in ln.split()[:2]] for ln in lines[start + 1 : end]], np.float32)
    except (ValueError, KeyError) as err:
        raise ValueError(f"{path}: malformed .pts file ({err})") from err
    points = points.reshape(-1, 2)
    if declared != len(points):
        raise ValueError(f"{path}: header says n_points: {declared}, found {len(points)}")
    return points - np.float32(index_base)


MARKER_FILE = "mobilefan_dataset.json"
_README_NAMES = ("README.md", "README.txt", "README")


def folder_index_base(root: str | os.PathLike, default: int = 1, levels: int = 3) -> tuple[int, str]:
    """How a folder's landmark files count pixels, from the folder itself.

    Looks in `root` and up to `levels` parents, nearest first, for
    ``mobilefan_dataset.json`` (``{"index_base": 0 or 1}``), then for a README
    whose first mention of "0-based" / "1-based" states the convention of its
    own files (``shared/data/300w/README.md``: "**0-based** pixel coordinates").

    Returns:
        (index base, where it came from: the marker/README path or "default").
    """
    folder = Path(root).resolve()
    for here in [folder, *folder.parents][: levels + 1]:
        marker = here / MARKER_FILE
        if marker.is_file():
            try:
                value = json.loads(marker.read_text()).get("index_base")
            except (OSError, ValueError, AttributeError) as err:
                raise ValueError(f"{marker}: unreadable marker ({err})") from None
            if value not in (0, 1):
                raise ValueError(f"{marker}: index_base must be 0 or 1, got {value!r}")
            return int(value), str(marker)
        for name in _README_NAMES:
            readme = here / name
            if readme.is_file():
                found = re.search(r"\b([01])-based\b", readme.read_text(errors="replace"))
                if found:
                    return int(found.group(1)), str(readme)
    return default, "default"


def read_300w(
    root: str | os.PathLike, index_base: int | None = None, skip_bad: bool = False, num_points: int | None = 68
) -> SampleList:
    """Finds every ``NAME.jpg|png`` + ``NAME.pts`` pair below `root`.

    Args:
        root: Dataset folder, searched recursively.
        index_base: 1 for the published (1-based) files, 0 for files already
            shifted; None (default): from the folder's marker or README (see
            `folder_index_base`; ``shared/data/300w`` says 0-based), else 1.
        skip_bad: Drop bad samples (listed in ``.skipped``) instead of raising.
        num_points: Expected K (a custom layout's point count); None accepts any.

    Returns:
        `SampleList` of `FaceSample`s sorted by name; name is the path
        relative to `root` without suffix; ``attributes["subset"]`` is the
        standard 300W subset (see `subset_300w`).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: dataset folder does not exist")
    if index_base is None:
        index_base, source = folder_index_base(root)
        logging.info("read_300w(%s): index base %d (%s)", root, index_base, source)
    collect = _Collector(skip_bad, f"read_300w({root})")
    samples = []
    files = sorted(root.rglob("*.pts"))
    if not files:
        has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*"))
        raise ValueError(f"{root}: no .pts landmark files found" if has_images else f"{root}: no images found")
    for pts in files:
        image = next((pts.with_suffix(s) for s in IMAGE_SUFFIXES if pts.with_suffix(s).exists()), None)
        image = image or pts.with_suffix(".jpg")
        problem = check_image_file(image)
        if problem:
            collect.bad(image, problem)
            continue
        try:
            landmarks = read_pts(pts, index_base)
        except ValueError as err:
            collect.bad(pts, str(err).split(": ", 1)[1])
            continue
        problem = check_landmarks(landmarks, num_points)
        if problem:
            collect.bad(pts, problem)
            continue
        name = pts.relative_to(root).with_suffix("").as_posix()
        samples.append(FaceSample(name, str(image), None, landmarks, None, {"subset": subset_300w(name)}))
    if not samples and not collect.skipped:
        raise ValueError(f"{root}: no .pts files found")
    return collect.result(samples)


def subset_300w(name: str) -> str:
    """Standard 300W subset of a sample from its folder names.

    Returns:
        ``"challenging"`` (ibug), ``"common"`` (helen/lfpw test sets),
        ``"train"`` (afw, helen/lfpw training sets) or ``"other"``.
    """
    parts = [p.lower() for p in Path(name).parts[:-1]]
    if "ibug" in parts:
        return "challenging"
    if any(p in ("helen", "lfpw") for p in parts):
        return "common" if any(p in ("testset", "test") for p in parts) else "train"
    return "train" if "afw" in parts else "other"


def split_300w(samples: Sequence[FaceSample], split: str) -> list[FaceSample]:
    """Selects a standard split: ``train``, ``common``, ``challenging`` or ``full``."""
    wanted = {"train": {"train"}, "common": {"common"}, "challenging": {"challenging"}, "full": {"common", "challenging"}}
    if split not in wanted:
        raise ValueError(f"Unknown 300W split {split!r}: use {sorted(wanted)}")
    return [s for s in samples if subset_300w(s.name) in wanted[split]]


def split_train_val(samples: Sequence[FaceSample], every: int = 10) -> tuple[list[FaceSample], list[FaceSample]]:
    """Deterministic hold-out: the every-th sample by sorted name (10th, 20th, ...) is validation."""
    ordered = sorted(samples, key=lambda s: s.name)
    val = [s for i, s in enumerate(ordered) if (i + 1) % every == 0]
    train = [s for i, s in enumerate(ordered) if (i + 1) % every != 0]
    return train, val


def write_split_list(path: str | os.PathLike, samples: Iterable[FaceSample | str]) -> None:
    """Writes one sample name per line."""
    names = [s if isinstance(s, str) else s.name for s in samples]
    Path(path).write_text("".join(n + "\n" for n in names))


def read_split_list(path: str | os.PathLike) -> list[str]:
    """Reads the names written by `write_split_list`."""
    return [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]


def read_wflw(
    annotation_file: str | os.PathLike, images_root: str | os.PathLike, skip_bad: bool = False, check_images: bool = True
) -> SampleList:
    """Reads ``list_98pt_rect_attr_{train,test}.txt``.

    Each line: 196 coordinates (x0 y0 ... x97 y97), the face box
    (x_min y_min x_max y_max), 6 attribute flags (pose, expression,
    illumination, make-up, occlusion, blur) and the image path relative to
    `images_root`. Coordinates are used as published (0-based).

    Returns:
        `SampleList`; ``attributes`` maps each WFLW attribute name to a bool.
        Names are ``"<image path without suffix>#<line number>"`` (one image
        can hold several faces).
    """
    collect = _Collector(skip_bad, f"read_wflw({annotation_file})")
    samples = []
    for lineno, line in enumerate(Path(annotation_file).read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{annotation_file}:{lineno}"
        if len(fields) != 196 + 4 + 6 + 1:
            collect.bad(where, f"expected 207 fields (196 coords, 4 box, 6 flags, path), found {len(fields)}")
            continue
        values = np.array(fields[:206], np.float32)
        landmarks = values[:196].reshape(98, 2)
        image_path = Path(images_root) / fields[206]
        problem = check_landmarks(landmarks, 98) or (check_image_file(image_path) if check_images else None)
        if problem:
            collect.bad(image_path if "image" in problem else where, problem)
            continue
        attributes = {k: bool(v) for k, v in zip(WFLW_ATTRIBUTES, values[200:206], strict=True)}
        name = f"{Path(fields[206]).with_suffix('').as_posix()}#{lineno}"
        samples.append(FaceSample(name, str(image_path), None, landmarks, values[196:200].copy(), attributes))
    return collect.result(samples)


def wflw_subset(samples: Sequence[FaceSample], attribute: str) -> list[FaceSample]:
    """The WFLW test subset with `attribute` set (e.g. ``"pose"``, ``"blur"``)."""
    if attribute not in WFLW_ATTRIBUTES:
        raise ValueError(f"Unknown WFLW attribute {attribute!r}: use {WFLW_ATTRIBUTES}")
    return [s for s in samples if s.attributes.get(attribute)]


def _to_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, :3])


def _load_cofw_scipy(mat_file: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    import scipy.io

    mat = scipy.io.loadmat(mat_file)
    keys = [k for k in mat if not k.startswith("__")]
    img_key = next(k for k in keys if k.startswith("Is"))
    suffix = img_key[2:]
    images = [_to_rgb(im) for im in np.asarray(mat[img_key], dtype=object).ravel()]
    phis = np.asarray(mat["phis" + suffix], np.float64)
    boxes = mat.get("bboxes" + suffix)
    return images, phis, None if boxes is None else np.asarray(boxes, np.float64)


def _load_cofw_h5(mat_file: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    import h5py

    with h5py.File(mat_file, "r") as f:
        img_key = next(k for k in f if k.startswith("Is"))
        suffix = img_key[2:]
        images = []
        for ref in np.asarray(f[img_key]).ravel():
            data = np.asarray(f[ref])  # MATLAB column-major: [W, H] or [3, W, H]
            images.append(_to_rgb(data.T))
        phis = np.asarray(f["phis" + suffix], np.float64).T
        boxes = np.asarray(f["bboxes" + suffix], np.float64).T if "bboxes" + suffix in f else None
    return images, phis, boxes


def read_cofw(mat_file: str | os.PathLike, index_base: int = 1, skip_bad: bool = False) -> SampleList:
    """Reads a COFW ``.mat`` file (``COFW_train.mat``, ``COFW_test_color.mat``, ...).

    Handles MATLAB v5 files (scipy.io) and v7.3/HDF5 files (h5py). Expects
    ``Is<T|Tr>`` (cell of images), ``phis<T|Tr>`` ([N, 87]: 29 x, 29 y, 29
    occlusion flags) and optionally ``bboxes<T|Tr>`` ([N, 4]: x, y, w, h).

    Args:
        mat_file: The .mat file.
        index_base: 1 (default; COFW is 1-based MATLAB), subtracted.
        skip_bad: Drop bad samples instead of raising.

    Returns:
        `SampleList` with in-memory RGB images; ``attributes["occluded"]`` is
        a bool [29] array; box is (x0, y0, x1, y1).
    """
    mat_file = str(mat_file)
    if not os.path.isfile(mat_file):
        raise ValueError(f"{mat_file}: COFW .mat file is missing")
    try:
        import h5py

        loader = _load_cofw_h5 if h5py.is_hdf5(mat_file) else _load_cofw_scipy
        images, phis, boxes = loader(mat_file)
    except Exception as err:  # noqa: BLE001 - any parse failure is reported the same way
        raise ValueError(f"{mat_file}: unreadable COFW .mat file ({type(err).__name__}: {err})") from err
    if phis.ndim != 2 or phis.shape[1] != 87 or phis.shape[0] != len(images):
        raise ValueError(f"{mat_file}: expected phis of shape [{len(images)}, 87], found {phis.shape}")
    collect = _Collector(skip_bad, f"read_cofw({mat_file})")
    samples = []
    stem = Path(mat_file).stem
    for i, (image, phi) in enumerate(zip(images, phis, strict=True)):
        landmarks = (np.stack([phi[:29], phi[29:58]], axis=1) - index_base).astype(np.float32)
        problem = check_landmarks(landmarks, 29)
        if problem:
            collect.bad(f"{mat_file}[{i}]", problem)
            continue
        box = None
        if boxes is not None:
            x, y, w, h = boxes[i]
            box = np.array([x - index_base, y - index_base, x - index_base + w, y - index_base + h], np.float32)
        attrs = {"occluded": phi[58:87] > 0.5}
        samples.append(FaceSample(f"{stem}/{i:04d}", None, image, landmarks, box, attrs))
    return collect.result(samples)
