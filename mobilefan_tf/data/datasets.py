"""One dataset argument: ``300w``, ``wflw``, ``cofw``, a spec file or a COCO keypoints JSON.

`load_dataset` turns it and a data location into (`LandmarkSpec`, faces); the
spec then decides the flip permutation, the heatmap count, the NME
normaliser and the plots downstream.

======================  ====================================================
dataset                 data_dir
======================  ====================================================
``300w``                folder of ``NAME.jpg|png`` + ``NAME.pts`` (1-based
                        unless the folder says 0-based, `folder_index_base`)
``wflw``                folder holding ``list_98pt_rect_attr_<split>.txt``
                        and ``WFLW_images/``
``cofw``                folder holding ``COFW_<split>[_color].mat``
spec file (``.json``)   folder of images + ``.pts`` with the spec's K
COCO JSON               images root (default: beside the JSON)
======================  ====================================================
"""

from __future__ import annotations

import os
from pathlib import Path

from mobilefan_tf.data.readers import SampleList, read_300w, read_cofw, read_wflw, split_300w
from mobilefan_tf.specs import SPECS, LandmarkSpec, get_spec, load_spec_file


def is_coco_file(dataset: str | os.PathLike) -> bool:
    """True when `dataset` is a JSON file with COCO ``categories`` / ``annotations``."""
    import json

    path = os.fspath(dataset)
    if not (os.path.isfile(path) and path.endswith(".json")):
        return False
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and ("annotations" in data or "categories" in data)


def dataset_spec(dataset: str | os.PathLike | LandmarkSpec) -> LandmarkSpec:
    """The layout a ``--dataset`` value names (a built-in name, spec file or COCO JSON).

    Raises:
        ValueError: one line, naming the file when `dataset` is a path.
    """
    if isinstance(dataset, LandmarkSpec):
        return dataset
    text = os.fspath(dataset)
    if text.lower().replace("-", "") in SPECS:
        return get_spec(text)
    if not os.path.exists(text):
        raise ValueError(f"{text}: not a dataset name ({', '.join(SPECS)}) nor an existing spec / COCO JSON file")
    return load_spec_file(text)


def _find(root: Path, pattern: str) -> Path | None:
    hits = sorted(root.rglob(pattern))
    return hits[0] if hits else None


def load_dataset(
    dataset: str | os.PathLike | LandmarkSpec,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    index_base: int | None = None,
    skip_bad: bool = False,
) -> tuple[LandmarkSpec, SampleList]:
    """Reads the faces of one dataset split with the dataset's own conventions.

    Args:
        dataset: ``300w``, ``wflw``, ``cofw``, a spec file or a COCO keypoints JSON.
        data_dir: Where the files are (see the module table). For a COCO
            JSON: the images root (default: the JSON's folder).
        split: ``train`` or ``test`` (WFLW, COFW; any other value: ``test``); for 300W ``train``,
            ``common``, ``challenging``, ``full`` or ``all`` (every face,
            tagged with its subset); ignored for spec-file folders and COCO.
        index_base: Override of the ``.pts`` index base (0 or 1); None: the
            folder's marker / README, else the spec's (300W 1, custom 0).
        skip_bad: Drop bad faces (listed in ``.skipped``) instead of raising.

    Returns:
        (spec, `SampleList` of `FaceSample`s with [K, 2] 0-based landmarks).

    Raises:
        ValueError: one line naming the file or folder and what is wrong
            (missing files, wrong point count for the spec, no images ...).
    """
    spec = dataset_spec(dataset)
    if not isinstance(dataset, LandmarkSpec) and is_coco_file(dataset):
        from mobilefan_tf.data.coco import read_coco_keypoints

        return spec, read_coco_keypoints(dataset, data_dir, skip_bad=skip_bad)
    if data_dir is None:
        raise ValueError(f"dataset {spec.name!r}: no data folder given")
    root = Path(data_dir)
    if not root.exists():
        raise ValueError(f"{root}: dataset folder does not exist")
    if spec.is_builtin and spec.name in ("wflw", "cofw") and split not in ("train", "test"):
        split = "test"  # all / full / ...: the benchmark split
    if spec.name == "wflw" and spec.is_builtin:
        ann = root if root.is_file() else _find(root, f"list_98pt_rect_attr_{split}.txt")
        if ann is None:
            raise ValueError(f"{root}: no WFLW annotation file list_98pt_rect_attr_{split}.txt")
        images = _find(root if root.is_dir() else root.parent, "WFLW_images") or ann.parent
        return spec, read_wflw(ann, images, skip_bad=skip_bad)
    if spec.name == "cofw" and spec.is_builtin:
        if root.is_file():
            mat = root
        else:
            files = sorted(root.glob(f"COFW_{split}*.mat"), key=lambda p: "color" not in p.name)
            if not files:
                raise ValueError(f"{root}: no COFW_{split}*.mat file")
            mat = files[0]  # prefer the colour version
        return spec, read_cofw(mat, index_base=spec.index_base if index_base is None else index_base, skip_bad=skip_bad)
    if index_base is None:
        from mobilefan_tf.data.readers import folder_index_base

        index_base, _ = folder_index_base(root, default=spec.index_base)
    samples = read_300w(root, index_base=index_base, skip_bad=skip_bad, num_points=spec.num_points)
    if spec.name == "300w" and spec.is_builtin and split != "all":
        samples = SampleList(split_300w(samples, split), samples.skipped)
        if not samples:
            raise ValueError(f"{root}: no faces in the 300W {split!r} split")
    return spec, samples
