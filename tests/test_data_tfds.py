"""TFDS builders: build offline from local files, read back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

tfds = pytest.importorskip("tensorflow_datasets")

from mobilefan_tf.data import read_300w, read_cofw, read_pts  # noqa: E402
from mobilefan_tf.data.tfds_builders import Landmarks300W, LandmarksCOFW  # noqa: E402


def test_300w_builder_roundtrip(w300_dir, tmp_path):
    manual = tmp_path / "manual"
    picks = []
    for folder in ("afw", "helen", "lfpw"):
        for pts in sorted((w300_dir / "300W-train" / folder).glob("*.pts"))[:2]:
            dest = manual / folder / pts.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(pts)
            dest.with_suffix(".jpg").symlink_to(pts.with_suffix(".jpg"))
            picks.append(f"{folder}/{pts.stem}")
    (manual / "mobilefan_dataset.json").write_text('{"index_base": 0}')  # the shared files are 0-based
    builder = Landmarks300W(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    assert set(builder.info.splits.keys()) == {"train"}
    examples = {ex["name"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert sorted(examples) == sorted(picks)
    for sample in read_300w(manual):
        ex = examples[sample.name]
        np.testing.assert_array_equal(ex["landmarks"], sample.landmarks)
        np.testing.assert_array_equal(ex["landmarks"], read_pts(manual / f"{sample.name}.pts", index_base=0))
        assert ex["image"].shape == (320, 320, 3) and ex["attributes"]["subset"] == b"train"
        np.testing.assert_allclose(ex["box"], [*sample.landmarks.min(0), *sample.landmarks.max(0)])


def test_cofw_builder_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    cells = np.empty((2, 1), dtype=object)
    for i in range(2):
        cells[i, 0] = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    phis = np.concatenate([rng.uniform(2, 28, (2, 58)), rng.uniform(size=(2, 29)) > 0.5], 1)
    boxes = np.array([[2.0, 3.0, 20.0, 20.0]] * 2)
    for split, suffix in (("train", "Tr"), ("test", "T")):
        scipy.io.savemat(tmp_path / f"COFW_{split}.mat", {f"Is{suffix}": cells, f"phis{suffix}": phis, f"bboxes{suffix}": boxes})
    builder = LandmarksCOFW(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path)))
    got = sorted(tfds.as_numpy(builder.as_dataset(split="test")), key=lambda ex: ex["name"])
    want = read_cofw(tmp_path / "COFW_test.mat")
    assert len(got) == 2
    for ex, s in zip(got, want, strict=True):
        np.testing.assert_array_equal(ex["image"], s.image)
        np.testing.assert_allclose(ex["landmarks"], s.landmarks)
        np.testing.assert_array_equal(ex["attributes"]["occluded"], s.attributes["occluded"])


def test_wflw_builder_roundtrip(tmp_path):
    import cv2

    from mobilefan_tf.data.tfds_builders import LandmarksWFLW

    image = tmp_path / "WFLW_images/7--Cheering/a.jpg"
    image.parent.mkdir(parents=True)
    cv2.imwrite(str(image), np.full((48, 64, 3), 200, np.uint8))
    ann = tmp_path / "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt"
    ann.parent.mkdir(parents=True)
    pts = np.stack([np.arange(98) * 0.5, np.arange(98) * 0.25 + 1], 1)
    fields = [f"{v:.6f}" for v in pts.ravel()] + ["1", "2", "50", "40", "0", "1", "0", "0", "1", "0", "7--Cheering/a.jpg"]
    ann.write_text(" ".join(fields) + "\n")
    builder = LandmarksWFLW(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path)))
    (ex,) = tfds.as_numpy(builder.as_dataset(split="test"))
    np.testing.assert_allclose(ex["landmarks"], pts)
    np.testing.assert_array_equal(ex["box"], [1, 2, 50, 40])
    assert ex["image"].shape == (48, 64, 3)
    assert {k: bool(v) for k, v in ex["attributes"].items()} == dict(
        pose=False, expression=True, illumination=False, make_up=False, occlusion=True, blur=False)


def test_custom_spec_builder_roundtrip(tmp_path):
    """landmarks_builder(spec file): a 5-point folder, read back exactly (0-based via the spec default)."""
    import json

    from PIL import Image

    from mobilefan_tf.data.synthetic import synthetic_faces_layout
    from mobilefan_tf.data.tfds_builders import landmarks_builder

    images, landmarks, _ = synthetic_faces_layout(2, "5", image_size=48, seed=3)
    for i, (image, lm) in enumerate(zip(images, landmarks, strict=True)):
        Image.fromarray(image).save(tmp_path / f"f{i}.png")
        rows = "\n".join(f"{x:.4f} {y:.4f}" for x, y in lm)
        (tmp_path / f"f{i}.pts").write_text(f"version: 1\nn_points: 5\n{{\n{rows}\n}}\n")
    spec_file = tmp_path / "five.json"
    spec_file.write_text(json.dumps({"name": "five", "num_points": 5, "flip_pairs": [[0, 1], [3, 4]], "norm_points": [0, 1]}))
    builder = landmarks_builder(str(spec_file), data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path)))
    got = sorted(tfds.as_numpy(builder.as_dataset(split="train")), key=lambda ex: ex["name"])
    assert [ex["name"] for ex in got] == [b"f0", b"f1"]
    for ex, image, lm in zip(got, images, landmarks, strict=True):
        np.testing.assert_array_equal(ex["image"], image)
        np.testing.assert_allclose(ex["landmarks"], lm, atol=1e-4)
