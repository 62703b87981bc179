"""TFDS builders for 300W, WFLW, COFW and custom layouts, reading local files (``manual_dir``).

    builder = Landmarks300W(data_dir="~/tensorflow_datasets")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="../shared/data/300w"))
    ds = builder.as_dataset(split="train")

    # The same dataset argument as everywhere else: 300w, wflw, cofw, a spec file, a COCO JSON.
    builder = landmarks_builder("five.json", data_dir="~/tensorflow_datasets")

Every example: ``image`` uint8 [H, W, 3], ``landmarks`` float32 [K, 2]
(0-based pixel centres), ``box`` float32 [4] (x0, y0, x1, y1; the landmark
box where the dataset has none), ``name`` and ``attributes`` (per dataset).
Only splits with at least one example are created.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from mobilefan_tf.data.readers import WFLW_ATTRIBUTES, FaceSample, read_300w, read_cofw, read_wflw, split_300w
from mobilefan_tf.data.transforms import face_box

# TFDS's default `code_path` lookup needs the optional `importlib_resources`
# package; each builder states its source file directly instead.
_CODE_PATH = epath.Path(__file__)


def _features(num_points: int, attributes: dict) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "landmarks": tfds.features.Tensor(shape=(num_points, 2), dtype=np.float32),
        "box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        "name": tfds.features.Text(),
        "attributes": tfds.features.FeaturesDict(attributes),
    })


def _example(sample: FaceSample, attributes: dict) -> tuple[str, dict]:
    box = face_box(sample.landmarks) if sample.box is None else sample.box
    image = sample.image if sample.image is not None else sample.image_path
    return sample.name, {
        "image": image, "landmarks": sample.landmarks, "box": np.asarray(box, np.float32),
        "name": sample.name, "attributes": attributes,
    }


class Landmarks300W(tfds.core.GeneratorBasedBuilder):
    """300W (iBUG 68 points): splits train, common, challenging, full."""

    name = "mobilefan_300w"
    code_path = _CODE_PATH
    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place the 300W folders (afw, helen/{trainset,testset}, lfpw/{trainset,testset}, ibug; "
        "NAME.jpg + NAME.pts) anywhere under manual_dir. Published .pts are 1-based; a folder of 0-based "
        "files says so with mobilefan_dataset.json ({\"index_base\": 0}) or its README, or set index_base."
    )
    index_base = None  # None: the folder's marker / README, else 1 (see readers.folder_index_base)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features(68, {"subset": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        samples = read_300w(dl_manager.manual_dir, index_base=self.index_base)
        splits = {name: split_300w(samples, name) for name in ("train", "common", "challenging", "full")}
        return {name: self._generate_examples(items) for name, items in splits.items() if items}

    def _generate_examples(self, samples):
        for s in samples:
            yield _example(s, {"subset": s.attributes["subset"]})


class LandmarksWFLW(tfds.core.GeneratorBasedBuilder):
    """WFLW (98 points) with its six attribute flags: splits train, test."""

    name = "mobilefan_wflw"
    code_path = _CODE_PATH
    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Extract WFLW_annotations (list_98pt_rect_attr_{train,test}.txt) and WFLW_images into manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features(98, {k: np.bool_ for k in WFLW_ATTRIBUTES}))

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        images = next(root.rglob("WFLW_images"), root)
        out = {}
        for split in ("train", "test"):
            ann = next(root.rglob(f"list_98pt_rect_attr_{split}.txt"), None)
            if ann is not None:
                out[split] = self._generate_examples(read_wflw(ann, images))
        return out

    def _generate_examples(self, samples):
        for s in samples:
            yield _example(s, s.attributes)


class LandmarksCOFW(tfds.core.GeneratorBasedBuilder):
    """COFW (29 points, per-point occlusion flags): splits train, test."""

    name = "mobilefan_cofw"
    code_path = _CODE_PATH
    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Place COFW_train[_color].mat and COFW_test[_color].mat in manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        occluded = tfds.features.Tensor(shape=(29,), dtype=np.bool_)
        return self.dataset_info_from_configs(features=_features(29, {"occluded": occluded}))

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        out = {}
        for split in ("train", "test"):
            files = sorted(root.glob(f"COFW_{split}*.mat"), key=lambda p: "color" not in p.name)
            if files:  # Prefer the colour version.
                out[split] = self._generate_examples(read_cofw(files[0]))
        return out

    def _generate_examples(self, samples):
        for s in samples:
            yield _example(s, {"occluded": s.attributes["occluded"]})


@dataclasses.dataclass
class CustomConfig(tfds.core.BuilderConfig):
    """A custom layout: ``dataset`` is its spec file or COCO keypoints JSON."""

    dataset: str = ""


class LandmarksCustom(tfds.core.GeneratorBasedBuilder):
    """Any layout from a spec file (folder of images + .pts in manual_dir) or a COCO keypoints JSON.

    Build it with `landmarks_builder`; the config name is the spec's name.
    One split, ``train``; ``attributes`` is empty.
    """

    name = "mobilefan_custom"
    code_path = _CODE_PATH
    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Spec file: manual_dir holds NAME.jpg|png + NAME.pts. COCO JSON: the images root."

    def __init__(self, *, config: CustomConfig, **kwargs):
        from mobilefan_tf.data.datasets import dataset_spec

        self.spec = dataset_spec(config.dataset)
        super().__init__(config=config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features(self.spec.num_points, {}))

    def _split_generators(self, dl_manager):
        from mobilefan_tf.data.datasets import load_dataset

        _, samples = load_dataset(self.builder_config.dataset, dl_manager.manual_dir)
        return {"train": self._generate_examples(samples)}

    def _generate_examples(self, samples):
        for s in samples:
            yield _example(s, {})


def landmarks_builder(dataset: str | os.PathLike, **kwargs) -> tfds.core.GeneratorBasedBuilder:
    """The builder for one ``--dataset`` value (``300w``, ``wflw``, ``cofw``, spec file, COCO JSON).

    Args:
        dataset: As `mobilefan_tf.data.datasets.load_dataset` takes it.
        **kwargs: Passed to the builder (``data_dir``, ...).
    """
    from mobilefan_tf.data.datasets import dataset_spec

    spec = dataset_spec(dataset)
    if spec.is_builtin:
        return {"300w": Landmarks300W, "wflw": LandmarksWFLW, "cofw": LandmarksCOFW}[spec.name](**kwargs)
    config = CustomConfig(name=spec.name, version="1.0.0", dataset=os.path.abspath(os.fspath(dataset)))
    return LandmarksCustom(config=config, **kwargs)
