"""Readers: exact values on fixture files in the published formats, and bad-input errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from mobilefan_tf.data import (
    read_300w,
    read_cofw,
    read_split_list,
    read_wflw,
    split_300w,
    split_train_val,
    wflw_subset,
    write_split_list,
)

POINTS = np.stack([np.arange(68) * 1.5 + 10.25, np.arange(68) * 0.5 + 20.0], axis=1).astype(np.float32)


def write_pts(path: Path, points: np.ndarray, n_points: int | None = None) -> None:
    lines = ["version: 1", f"n_points: {n_points or len(points)}", "{"]
    lines += [f"{x:.3f} {y:.3f}" for x, y in points] + ["}"]
    path.write_text("\n".join(lines) + "\n")


def write_jpg(path: Path, size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))


def make_face(folder: Path, name: str, points: np.ndarray = POINTS, **kw) -> None:
    write_jpg(folder / f"{name}.jpg")
    write_pts(folder / f"{name}.pts", points, **kw)


def test_pts_exact_values_and_index_base(tmp_path):
    make_face(tmp_path / "afw", "a")
    (zero,) = read_300w(tmp_path, index_base=0)
    (one,) = read_300w(tmp_path, index_base=1)
    (default,) = read_300w(tmp_path)  # no marker, no README: the published 300W convention, 1-based
    assert zero.name == "afw/a" and zero.landmarks.dtype == np.float32
    np.testing.assert_array_equal(zero.landmarks, POINTS)
    np.testing.assert_array_equal(one.landmarks, POINTS - 1)
    np.testing.assert_array_equal(default.landmarks, POINTS - 1)
    assert zero.attributes["subset"] == "train"


def test_300w_splits_by_folder(tmp_path):
    for folder in ("afw", "helen/trainset", "helen/testset", "lfpw/trainset", "lfpw/testset", "ibug"):
        make_face(tmp_path / folder, "f")
    samples = read_300w(tmp_path)
    names = lambda split: sorted(s.name for s in split_300w(samples, split))  # noqa: E731
    assert names("train") == ["afw/f", "helen/trainset/f", "lfpw/trainset/f"]
    assert names("common") == ["helen/testset/f", "lfpw/testset/f"]
    assert names("challenging") == ["ibug/f"]
    assert names("full") == ["helen/testset/f", "ibug/f", "lfpw/testset/f"]


def test_split_train_val_is_deterministic(tmp_path):
    for i in range(25):
        make_face(tmp_path, f"f{i:02d}")
    samples = read_300w(tmp_path)
    train, val = split_train_val(samples[::-1])
    assert [s.name for s in val] == ["f09", "f19"]
    assert len(train) == 23 and not {s.name for s in train} & {s.name for s in val}
    write_split_list(tmp_path / "val.txt", val)
    assert read_split_list(tmp_path / "val.txt") == ["f09", "f19"]


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing", "image file is missing"),
        ("truncated", "image file is truncated"),
        ("67 points", "expected 68 points, found 67"),
        ("nan", "non-finite"),
        ("header", "header says n_points: 68, found 67"),
    ],
)
def test_bad_300w_sample_errors_and_skips(tmp_path, breakage, message):
    for name in ("good1", "bad", "good2"):
        make_face(tmp_path, name)
    if breakage == "missing":
        (tmp_path / "bad.jpg").unlink()
        bad_file = tmp_path / "bad.jpg"
    elif breakage == "truncated":
        data = (tmp_path / "bad.jpg").read_bytes()
        (tmp_path / "bad.jpg").write_bytes(data[: len(data) // 2])
        bad_file = tmp_path / "bad.jpg"
    else:
        bad_file = tmp_path / "bad.pts"
        if breakage == "67 points":
            write_pts(bad_file, POINTS[:67])
        elif breakage == "nan":
            write_pts(bad_file, np.where(np.arange(68)[:, None] == 5, np.nan, POINTS))
        else:
            write_pts(bad_file, POINTS[:67], n_points=68)
    with pytest.raises(ValueError) as err:
        read_300w(tmp_path)
    assert str(err.value).startswith(f"{bad_file}: ") and message in str(err.value)
    kept = read_300w(tmp_path, skip_bad=True)
    assert [s.name for s in kept] == ["good1", "good2"]
    assert len(kept.skipped) == 1 and kept.skipped[0][0] == str(bad_file)


def test_real_300w_is_zero_based(w300_dir):
    """The shared crops are centred on the landmark box at 160: an index-base slip shows as 159."""
    samples = read_300w(w300_dir)
    assert len(samples) == 2012 and not samples.skipped
    centres = np.stack([(s.landmarks.min(0) + s.landmarks.max(0)) / 2 for s in samples])
    np.testing.assert_allclose(centres, 160.0, atol=0.01)
    shifted = read_300w(w300_dir / "300W-train/afw", index_base=1)
    assert abs(float(shifted[0].landmarks.max(0)[0] + shifted[0].landmarks.min(0)[0]) / 2 - 159.0) < 0.01
    train, val = split_train_val(samples)
    assert len(val) == 201 and len(train) == 1811


def wflw_line(points: np.ndarray, box, attrs, image: str) -> str:
    values = [f"{v:.6f}" for v in points.ravel()] + [str(v) for v in box] + [str(v) for v in attrs]
    return " ".join(values + [image])


def test_wflw_exact_values(tmp_path):
    pts = np.stack([np.arange(98) * 2.0 + 0.5, np.arange(98) + 100.25], 1).astype(np.float32)
    write_jpg(tmp_path / "imgs/51--Dresses/51_Dresses_wearingdress_51_377.jpg")
    ann = tmp_path / "list_98pt_rect_attr_test.txt"
    lines = [
        wflw_line(pts, (10, 20, 210, 230), (1, 0, 0, 0, 1, 0), "51--Dresses/51_Dresses_wearingdress_51_377.jpg"),
        wflw_line(pts + 1, (11, 21, 211, 231), (0, 0, 0, 0, 0, 1), "51--Dresses/51_Dresses_wearingdress_51_377.jpg"),
    ]
    ann.write_text("\n".join(lines) + "\n")
    first, second = read_wflw(ann, tmp_path / "imgs")
    np.testing.assert_array_equal(first.landmarks, pts)
    np.testing.assert_array_equal(second.landmarks, pts + 1)
    np.testing.assert_array_equal(first.box, [10, 20, 210, 230])
    assert first.attributes == dict(pose=True, expression=False, illumination=False, make_up=False, occlusion=True, blur=False)
    assert first.name == "51--Dresses/51_Dresses_wearingdress_51_377#1"
    assert [s.name for s in wflw_subset([first, second], "blur")] == [second.name]
    ann.write_text(lines[0].rsplit(" ", 3)[0] + "\n")
    with pytest.raises(ValueError, match=r"list_98pt_rect_attr_test.txt:1: expected 207 fields"):
        read_wflw(ann, tmp_path / "imgs")


def cofw_arrays(n: int = 3):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8) for i in range(n)]
    images[1] = images[1][:, :, 0]  # COFW mixes grey and colour images.
    phis = np.concatenate([rng.uniform(1, 40, (n, 58)).round(2), (rng.uniform(size=(n, 29)) > 0.7)], 1)
    boxes = np.array([[3.0, 4.0, 30.0, 25.0]] * n)
    return images, phis, boxes


def check_cofw(samples, images, phis, boxes):
    assert len(samples) == len(images)
    for s, image, phi in zip(samples, images, phis, strict=True):
        expected = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, 2)
        np.testing.assert_array_equal(s.image, expected)
        np.testing.assert_allclose(s.landmarks[:, 0], phi[:29] - 1, atol=1e-5)
        np.testing.assert_allclose(s.landmarks[:, 1], phi[29:58] - 1, atol=1e-5)
        np.testing.assert_array_equal(s.attributes["occluded"], phi[58:] > 0.5)
        np.testing.assert_allclose(s.box, [2, 3, 32, 28])


def test_cofw_matlab_v5(tmp_path):
    images, phis, boxes = cofw_arrays()
    cells = np.empty((len(images), 1), dtype=object)
    for i, im in enumerate(images):
        cells[i, 0] = im
    scipy.io.savemat(tmp_path / "COFW_test.mat", {"IsT": cells, "phisT": phis, "bboxesT": boxes})
    check_cofw(read_cofw(tmp_path / "COFW_test.mat"), images, phis, boxes)


def test_cofw_matlab_v73_hdf5(tmp_path):
    images, phis, boxes = cofw_arrays()
    path = tmp_path / "COFW_test_color.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = []
        for i, im in enumerate(images):  # MATLAB stores column-major: h5py sees the transpose.
            refs.append(f.create_dataset(f"#refs#/{i}", data=im.T).ref)
        f.create_dataset("IsT", data=np.array(refs, dtype=h5py.ref_dtype)[None, :])
        f.create_dataset("phisT", data=phis.T)
        f.create_dataset("bboxesT", data=boxes.T)
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116))
    check_cofw(read_cofw(path), images, phis, boxes)


def test_cofw_bad_files(tmp_path):
    bad = tmp_path / "COFW_train.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match=rf"^{bad}: unreadable COFW .mat file"):
        read_cofw(bad)
    with pytest.raises(ValueError, match="COFW .mat file is missing"):
        read_cofw(tmp_path / "nope.mat")
    images, phis, boxes = cofw_arrays()
    phis[1, 3] = np.nan
    cells = np.empty((3, 1), dtype=object)
    for i, im in enumerate(images):
        cells[i, 0] = im
    scipy.io.savemat(bad, {"IsTr": cells, "phisTr": phis, "bboxesTr": boxes})
    with pytest.raises(ValueError, match=r"COFW_train.mat\[1\]: 1 point\(s\) have non-finite"):
        read_cofw(bad)
    kept = read_cofw(bad, skip_bad=True)
    assert [s.name for s in kept] == ["COFW_train/0000", "COFW_train/0002"] and len(kept.skipped) == 1


def test_missing_root(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_300w(tmp_path / "absent")
