"""Custom landmark sets (spec file, COCO JSON), index bases, dataset subsets and bad input.

End to end on synthetic faces with non-68 layouts derived from the 68-point
generator (5 points: eyes, nose, mouth corners; 98 points: the 68 plus
midpoints and pupils): train (smoke), evaluate, export, predict.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from mobilefan_tf import cli
from mobilefan_tf.data import read_300w, read_pts
from mobilefan_tf.data.coco import coco_spec, read_coco_keypoints, write_coco_keypoints
from mobilefan_tf.data.datasets import load_dataset
from mobilefan_tf.data.readers import FaceSample, folder_index_base
from mobilefan_tf.data.synthetic import derived_layout, synthetic_faces, synthetic_faces_layout
from mobilefan_tf.evaluation import evaluation_subsets, subset_results
from mobilefan_tf.flip_averaging import mirror_landmarks
from mobilefan_tf.specs import COFW, W300, WFLW, get_spec, load_spec_file, spec_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIVE = {"name": "five", "num_points": 5, "flip_pairs": [[0, 1], [3, 4]], "norm_points": [0, 1],
        "names": ["left_eye", "right_eye", "nose", "left_mouth", "right_mouth"]}


def _write_pts(path, points, index_base=0):
    rows = "\n".join(f"{x + index_base:.4f} {y + index_base:.4f}" for x, y in points)
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{rows}\n}}\n")


def _one_line(err: str, *needles):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _write_folder(folder, layout, num, seed=0, size=96, index_base=0):
    """`num` synthetic faces as NAME.png + NAME.pts; returns (landmarks [N, K, 2], spec)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, landmarks, spec = synthetic_faces_layout(num, layout, image_size=size, seed=seed)
    for i, (image, lm) in enumerate(zip(images, landmarks, strict=True)):
        Image.fromarray(image).save(folder / f"face{i:03d}.png")
        _write_pts(folder / f"face{i:03d}.pts", lm, index_base)
    return landmarks, spec


def test_spec_file_round_trip_and_one_line_errors(tmp_path):
    good = tmp_path / "five.json"
    good.write_text(json.dumps(FIVE))
    spec = get_spec(str(good))
    assert spec.num_points == 5 and spec.eye_outer == (0, 1) and spec.flip_pairs == ((0, 1), (3, 4))
    np.testing.assert_array_equal(spec.flip_permutation, [1, 0, 2, 4, 3])
    assert get_spec(spec_config(spec)) == spec and get_spec("five") is spec  # saved whole, found by name
    assert spec_config("300w") == "300w" and get_spec(W300.to_dict()) is W300
    toml = tmp_path / "five.toml"
    toml.write_text('num_points = 5\nnorm_points = [0, 1]\nflip_permutation = [1, 0, 2, 4, 3]\n')
    assert load_spec_file(toml).flip_pairs == ((0, 1), (3, 4))
    cases = {
        "point 1 is in both (0, 1) and (1, 4)": {**FIVE, "flip_pairs": [[0, 1], [1, 4]]},
        "index 5 is out of range 0..4": {**FIVE, "flip_pairs": [[0, 5]]},
        "pairs a point with itself": {**FIVE, "flip_pairs": [[2, 2]]},
        "not an involution: 0 -> 1 -> 2": {**FIVE, "flip_pairs": None, "flip_permutation": [1, 2, 0, 3, 4]},
        "no 'norm_points'": {k: v for k, v in FIVE.items() if k != "norm_points"},
        "4 names for 5 points": {**FIVE, "names": FIVE["names"][:4]},
    }
    for message, data in cases.items():
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
        with pytest.raises(ValueError) as err:
            load_spec_file(bad)
        assert str(err.value).startswith(f"{bad}: ") and message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("layout", ["5", "98"])
def test_derived_layouts_flip_with_the_image(layout):
    """A derived layout's flip pairs are right: mirroring the drawn face mirrors the derived points."""
    spec, weights = derived_layout(layout)
    images, lm68 = synthetic_faces(3, image_size=96, seed=4)
    lm = np.einsum("kj,njc->nkc", weights, lm68)
    mirrored68 = mirror_landmarks(lm68, 96, W300)  # the generator's 68 points are exact
    np.testing.assert_allclose(mirror_landmarks(lm, 96, spec), np.einsum("kj,njc->nkc", weights, mirrored68), atol=1e-4)
    perm = spec.flip_permutation
    np.testing.assert_array_equal(perm[perm], np.arange(spec.num_points))
    assert spec.num_points == int(layout)


def test_flip_augmentation_uses_the_custom_permutation(tmp_path):
    """build_dataset with a forced flip: landmarks are the mirror of the unflipped ones, re-ordered by the spec."""
    from mobilefan_tf.data import AugmentConfig, build_dataset

    images, lm, spec = synthetic_faces_layout(4, "5", image_size=96, seed=1)
    flip = AugmentConfig(**{**AugmentConfig.none().__dict__, "flip_prob": 1.0})
    common = {"spec": spec, "input_size": 64, "batch_size": 4, "shuffle": False, "with_landmarks": True}
    _, maps, plain = next(iter(build_dataset(images, lm, **common)))
    _, _, flipped = next(iter(build_dataset(images, lm, augment=flip, seed=3, **common)))
    assert maps.shape == (4, 16, 16, 5)
    np.testing.assert_allclose(flipped.numpy(), mirror_landmarks(plain.numpy(), 64, spec), atol=1e-3)


def test_index_base_from_marker_readme_or_published_default(tmp_path):
    lm, _ = _write_folder(tmp_path / "plain", "5", 1, index_base=1)
    spec5 = get_spec(FIVE)
    (one,) = read_300w(tmp_path / "plain", num_points=5)  # no marker, no README: published 300W convention
    np.testing.assert_allclose(one.landmarks, lm[0], atol=1e-3)
    readme = tmp_path / "zero"
    _write_folder(readme / "sub", "5", 1, index_base=0)
    (readme / "README.md").write_text("Points are **0-based** pixel centres (published files are 1-based).\n")
    assert folder_index_base(readme / "sub") == (0, str(readme / "README.md"))
    (zero,) = read_300w(readme / "sub", num_points=5)
    np.testing.assert_allclose(zero.landmarks, lm[0], atol=1e-3)
    (tmp_path / "plain" / "mobilefan_dataset.json").write_text('{"index_base": 0}')
    (shifted,) = load_dataset(spec5, tmp_path / "plain")[1]
    np.testing.assert_allclose(shifted.landmarks, lm[0] + 1, atol=1e-3)
    assert W300.index_base == 1 and COFW.index_base == 1 and WFLW.index_base == 0 and spec5.index_base == 0


def test_shared_300w_is_read_0_based_by_the_training_scripts(w300_dir):
    """experiments.script_setup with default flags: the landmarks are the files' numbers, unshifted."""
    code = (
        "import sys; from absl import flags; from experiments import script_setup as common\n"
        "common.define_flags('t', 'mobilefan'); flags.FLAGS(['t'])\n"
        "s = common.load_samples('train'); print(len(s), s[0].image_path); print(repr(s[0].landmarks[:3].tolist()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    head, points = proc.stdout.strip().splitlines()[-2:]
    count, image = head.split(" ", 1)
    raw = read_pts(os.path.splitext(image)[0] + ".pts", index_base=0)
    assert int(count) == 2012
    np.testing.assert_array_equal(np.array(eval(points), np.float32), raw[:3])  # noqa: S307 - our own repr
    (lib,) = [s for s in read_300w(w300_dir / "300W-train/afw") if s.image_path == image] or [None]
    if lib is not None:  # the library reader agrees (the README says 0-based)
        np.testing.assert_array_equal(lib.landmarks, raw)


def test_coco_keypoints_spec_reader_and_errors(tmp_path):
    images, lm, spec = synthetic_faces_layout(3, "5", image_size=64, seed=2)
    samples = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"f{i}.png")
        samples.append(FaceSample(f"f{i}", str(tmp_path / f"f{i}.png"), None, lm[i]))
    path = tmp_path / "faces.json"
    write_coco_keypoints(path, samples, spec, tmp_path)
    data = json.loads(path.read_text())
    del data["categories"][0]["flip_pairs"], data["categories"][0]["norm_points"]  # found from the names
    path.write_text(json.dumps(data))
    got = coco_spec(path)
    assert got.flip_pairs == ((0, 1), (3, 4)) and got.eye_outer == (0, 1) and got.num_points == 5
    read = read_coco_keypoints(path)
    np.testing.assert_allclose(np.stack([s.landmarks for s in read]), lm, atol=1e-3)
    assert [s.name for s in read] == ["f0#0", "f1#1", "f2#2"]

    no_kp = tmp_path / "nokp.json"
    no_kp.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "face"}]}))
    with pytest.raises(ValueError, match=r"nokp.json: COCO JSON has no keypoints"):
        load_dataset(str(no_kp))
    data["annotations"][1]["keypoints"][2] = 0  # point 0 of face 1 unlabelled
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"faces.json: annotation 1: 1 keypoint\(s\) are not labelled"):
        read_coco_keypoints(path)
    assert len(read_coco_keypoints(path, skip_bad=True)) == 2


def test_bad_input_one_line_nonzero_exit(tmp_path, capsys):
    """Bad spec, wrong point count, COCO without keypoints, folder without images: one line, exit 1, no run."""
    bad_spec = tmp_path / "bad.json"
    bad_spec.write_text(json.dumps({**FIVE, "flip_pairs": [[0, 1], [1, 2]]}))
    five = tmp_path / "five.json"
    five.write_text(json.dumps(FIVE))
    _write_folder(tmp_path / "faces68", "98", 1)  # 98-point files for a 5-point spec
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no faces here")
    no_kp = tmp_path / "nokp.json"
    no_kp.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1}]}))
    cases = [
        (["--dataset", str(bad_spec), str(tmp_path / "faces68")], [str(bad_spec), "not a permutation"]),
        (["--dataset", str(five), str(tmp_path / "faces68")], ["face000.pts", "expected 5 points, found 98"]),
        ([str(no_kp)], [str(no_kp), "no keypoints"]),
        (["--dataset", str(five), str(tmp_path / "empty")], [str(tmp_path / "empty"), "no images found"]),
    ]
    from mobilefan_tf.models import build_model

    model = tmp_path / "tiny.keras"
    build_model("mobilefan_lite", input_size=64, width=0.35, deconv_filters=16).save(model)
    for args, needles in cases:
        assert cli.main(["evaluate", *args, "--model", str(model)]) == 1
        _one_line(capsys.readouterr().err, *needles)
    # the same through a training script: absl UsageError, exit 1, nothing trained
    for args, needles in cases[1:2]:
        workdir = tmp_path / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "experiments.train_student", "--smoke", f"--dataset={args[1]}",
             f"--data_dir={args[2]}", f"--workdir={workdir}"],
            cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert all(n in proc.stderr for n in needles), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and not (workdir / "best.keras").exists()


def test_subsets_per_dataset_convention():
    lm = np.zeros((68, 2), np.float32)
    names = ["helen/testset/a", "lfpw/testset/b", "ibug/c", "afw/d"]
    from mobilefan_tf.data import subset_300w

    faces = [FaceSample(n, None, None, lm, None, {"subset": subset_300w(n)}) for n in names]
    subsets = evaluation_subsets(faces, "300w")
    assert subsets == {"all": [0, 1, 2, 3], "common": [0, 1], "challenging": [2], "full": [0, 1, 2]}
    wflw = [FaceSample(str(i), None, None, np.zeros((98, 2)), None, {"pose": i == 0, "blur": i > 0}) for i in range(3)]
    assert evaluation_subsets(wflw, "wflw") == {"all": [0, 1, 2], "pose": [0], "blur": [1, 2]}
    assert evaluation_subsets(wflw, get_spec(FIVE)) == {"all": [0, 1, 2]}
    result = {"threshold": 0.1, "norm": "inter_ocular", "per_image": [{"nme": v} for v in (0.02, 0.04, 0.2, 0.06)]}
    table = subset_results(result, subsets)
    assert table["common"]["nme"] == pytest.approx(0.03) and table["challenging"]["failure_rate"] == 1.0
    assert table["full"]["num_images"] == 3 and table["all"]["auc"] == pytest.approx((0.08 + 0.06 + 0 + 0.04) / 4 / 0.1)


def test_cofw_is_scored_inter_pupil():
    from mobilefan_tf.metrics import NormalizedMeanError, nme_per_image

    gt = np.zeros((1, 29, 2))
    gt[0, 8], gt[0, 9], gt[0, 16], gt[0, 17] = (0, 0), (40, 0), (10, 0), (30, 0)  # corners 40 px, pupils 20 px
    pred = gt + [1.0, 0.0]
    assert COFW.default_norm == "inter_pupil" and NormalizedMeanError("cofw").norm == "inter_pupil"
    assert nme_per_image(pred, gt, COFW, COFW.default_norm)[0] == pytest.approx(1 / 20)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["5", "98"])
def test_custom_layout_train_evaluate_export_predict(tmp_path, layout, capsys):
    """A user's own layout without code: spec file (5) or COCO JSON (98) -> train, evaluate, export, predict."""
    t0 = time.time()
    lm, spec = _write_folder(tmp_path / "faces", layout, 20, seed=5)
    if layout == "5":
        dataset = tmp_path / "five.json"
        dataset.write_text(json.dumps({**FIVE, "name": "synthetic5"}))
        data_args = [f"--dataset={dataset}", f"--data_dir={tmp_path / 'faces'}"]
    else:
        samples = read_300w(tmp_path / "faces", index_base=0, num_points=98)
        dataset = write_coco_keypoints(tmp_path / "faces" / "faces98.json", samples, spec, tmp_path / "faces")
    workdir = tmp_path / "run"
    if layout == "5":  # the script a user runs
        proc = subprocess.run(
            [sys.executable, "-m", "experiments.train_student", "--smoke", "--epochs=1", *data_args,
             f"--workdir={workdir}"],
            cwd=REPO, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:  # the Python API (saves a second script start-up): load_dataset -> build_dataset -> fit
        from mobilefan_tf.data import build_dataset
        from mobilefan_tf.models import build_model
        from mobilefan_tf.specs import spec_config
        from mobilefan_tf.training import TrainConfig, compile_heatmap_model

        got_spec, faces = load_dataset(str(dataset), tmp_path / "faces")
        assert got_spec.flip_pairs == spec.flip_pairs and len(faces) == 20
        net = build_model("mobilefan_lite", num_keypoints=98, spec=spec_config(got_spec), input_size=64, width=0.35,
                          deconv_filters=16)  # fmt: skip
        compile_heatmap_model(net, TrainConfig(epochs=1, batch_size=8, warmup_epochs=0.0), got_spec, 5)
        net.fit(build_dataset(faces, spec=got_spec, input_size=64, batch_size=8), epochs=1, verbose=0)
        workdir.mkdir()
        net.save(workdir / "best.keras")
    model = workdir / "best.keras"
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", str(tmp_path / "faces") if layout == "5" else str(dataset), "--model", str(model),
                     "--json", str(out), "--plot", str(tmp_path / "ced.png"), "--index_base", "0"]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["num_images"] == 20 and result["spec"] == f"synthetic{layout}" and result["subsets"]["all"]
    assert (tmp_path / "ced.png").stat().st_size > 0
    tflite = tmp_path / "m.tflite"
    assert cli.main(["export", str(tflite), "--format", "tflite", "--model", str(model)]) == 0
    meta = json.loads((tmp_path / "m.tflite.json").read_text())
    assert meta["num_keypoints"] == int(layout) and get_spec(meta["spec"]).flip_pairs == spec.flip_pairs
    pred = tmp_path / "pred.json"
    assert cli.main(["predict", str(tmp_path / "faces" / "face000.png"), "--model", str(tflite), "--boxes",
                     "10,10,86,86", "--json", str(pred)]) == 0  # fmt: skip
    faces = json.loads(pred.read_text())["faces"]
    assert np.asarray(faces[0]["landmarks"]).shape == (int(layout), 2)
    print(f"custom layout {layout}: {time.time() - t0:.0f}s")
