"""The `mobilefan` command, through subprocess and through `main([...])`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from mobilefan_tf import cli, predictor
from mobilefan_tf.data import synthetic_faces
from mobilefan_tf.models import build_model

HAS_DLIB = __import__("importlib").util.find_spec("dlib") is not None


def _run(*args):
    """Runs the installed console script (falls back to `python -m`)."""
    exe = [sys.executable, "-m", "mobilefan_tf.cli"]
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=300)


def _one_error_line(stderr: str, *fragments: str) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mobilefan: error: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small untrained model and test photos."""
    root = tmp_path_factory.mktemp("cli")
    model = build_model("mobilefan_lite", num_keypoints=68)
    model.save(root / "lite.keras")
    photo = data.astronaut()
    Image.fromarray(photo).save(root / "astronaut.png")
    Image.fromarray(photo).convert("L").save(root / "gray.png")
    Image.fromarray(photo).convert("RGBA").save(root / "rgba.png")
    Image.fromarray(photo[..., 0].astype(np.uint16) * 257).save(root / "deep.png")
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(root / "blank.png")
    Image.fromarray(photo).save(root / "photo.jpg")
    raw = (root / "photo.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
    (root / "notes.jpg").write_text("not an image")
    return root


def test_help_of_every_subcommand():
    for args in ([], ["predict"], ["evaluate"], ["export"], ["benchmark"]):
        out = _run(*args, "--help")
        assert out.returncode == 0 and "usage: mobilefan" in out.stdout, out.stderr


@pytest.mark.skipif(not HAS_DLIB, reason="needs dlib for face detection")
def test_predict_astronaut_subprocess(files):
    out = _run(
        "predict", str(files / "astronaut.png"), "--model", str(files / "lite.keras"),
        "--json", str(files / "a.json"), "--draw", str(files / "a.png"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads((files / "a.json").read_text())
    assert result["image"].endswith("astronaut.png") and len(result["faces"]) == 1
    face = result["faces"][0]
    assert np.asarray(face["landmarks"]).shape == (68, 2) and len(face["box"]) == 4
    x0, y0, x1, y1 = face["box"]
    assert 150 < x0 < 220 and 260 < x1 < 300 and 70 < y0 < 120 and 160 < y1 < 210
    assert Image.open(files / "a.png").size == (512, 512)


def test_predict_main_with_boxes_and_odd_images(files, capsys):
    images = [str(files / n) for n in ("astronaut.png", "gray.png", "rgba.png", "deep.png")]
    code = cli.main(
        ["predict", *images, "--model", str(files / "lite.keras"), "--boxes", "170,70,270,170", "--json", "-"]
    )
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [len(r["faces"]) for r in results] == [1, 1, 1, 1]
    assert results[0]["faces"][0]["box"] == [170, 70, 270, 170]


@pytest.mark.skipif(not HAS_DLIB, reason="needs dlib for face detection")
def test_predict_no_face(files, capsys):
    code = cli.main(["predict", str(files / "blank.png"), "--model", str(files / "lite.keras"), "--json", "-"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["faces"] == []
    assert "no face found" in captured.err


def test_predict_bad_image_subprocess(files):
    out = _run("predict", str(files / "truncated.jpg"), "--model", str(files / "lite.keras"), "--boxes", "0,0,50,50")
    assert out.returncode == 1
    _one_error_line(out.stderr, "truncated.jpg", "unreadable image")


@pytest.mark.parametrize("name,problem", [("notes.jpg", "not an image"), ("nope.png", "no such file")])
def test_predict_bad_images(files, capsys, name, problem):
    assert cli.main(["predict", str(files / name), "--model", str(files / "lite.keras"), "--boxes", "0,0,50,50"]) == 1
    _one_error_line(capsys.readouterr().err, name, problem)


def test_bad_models_and_missing_default(files, tmp_path, monkeypatch, capsys):
    photo = str(files / "astronaut.png")
    (tmp_path / "broken.keras").write_bytes(b"junk")
    for model, problem in ((tmp_path / "missing.keras", "not found"), (tmp_path / "broken.keras", "broken.keras")):
        assert cli.main(["predict", photo, "--model", str(model)]) == 1
        _one_error_line(capsys.readouterr().err, problem)
    monkeypatch.setattr("mobilefan_tf.default_model.ASSETS_DIR", str(tmp_path / "assets"))
    assert cli.main(["predict", photo]) == 1
    _one_error_line(capsys.readouterr().err, "no default model is shipped yet", "--model")


def test_huge_image_refused_and_debug_traceback(files, monkeypatch, capsys):
    monkeypatch.setattr(predictor, "MAX_PIXELS", 1000)
    args = ["predict", str(files / "astronaut.png"), "--model", str(files / "lite.keras")]
    assert cli.main(args) == 1
    _one_error_line(capsys.readouterr().err, "too large")
    assert cli.main(["--debug", *args]) == 1
    assert "Traceback" in capsys.readouterr().err


def _write_pts(path, points, index_base=0):
    rows = "\n".join(f"{x + index_base:.3f} {y + index_base:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{rows}\n}}\n")


def test_evaluate_folder(files, tmp_path):
    images, landmarks = synthetic_faces(4, image_size=160, seed=2)
    (tmp_path / "sub").mkdir()
    for i, (image, lm) in enumerate(zip(images, landmarks, strict=True)):
        folder = tmp_path if i < 2 else tmp_path / "sub"
        Image.fromarray(image).save(folder / f"face{i}.png")
        _write_pts(folder / f"face{i}.pts", lm, index_base=1)
    out_json, plot = tmp_path / "eval.json", tmp_path / "ced.png"
    code = cli.main(
        ["evaluate", str(tmp_path), "--model", str(files / "lite.keras"), "--index_base", "1",
         "--json", str(out_json), "--plot", str(plot), "--threshold", "0.1"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out_json.read_text())
    assert result["num_images"] == 4 and len(result["per_image"]) == 4
    assert {"nme", "failure_rate", "auc", "parts", "per_image"} <= set(result)
    assert list(result["parts"])[0] == "jaw" and all(v > 0 for v in result["parts"].values())
    assert {"file", "nme"} <= set(result["per_image"][0]) and result["threshold"] == 0.1
    assert plot.stat().st_size > 0 and result["flip_test"] is True
    assert cli.main(["evaluate", str(tmp_path), "--model", str(files / "lite.keras"), "--index_base", "1",
                     "--json", str(out_json), "--no_flip"]) == 0  # fmt: skip
    once = json.loads(out_json.read_text())
    assert once["flip_test"] is False and once["nme"] != result["nme"]


def test_evaluate_bad_folder(files, tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "none"), "--model", str(files / "lite.keras")]) == 1
    _one_error_line(capsys.readouterr().err, "none")


def test_export_then_predict_and_benchmark(files, tmp_path, capsys):
    keras_model = str(files / "lite.keras")
    assert cli.main(["export", "--format", "tflite", "--model", keras_model, str(tmp_path / "m.tflite")]) == 0
    assert cli.main(["export", "--format", "saved_model", "--model", keras_model, str(tmp_path / "sm")]) == 0
    assert os.path.isfile(tmp_path / "sm" / "saved_model.pb")
    for model in ("m.tflite", "sm"):
        args = ["predict", str(files / "astronaut.png"), "--model", str(tmp_path / model), "--boxes", "170,70,270,170"]
        assert cli.main([*args, "--json", str(tmp_path / f"{model}.json")]) == 0
        assert len(json.loads((tmp_path / f"{model}.json").read_text())["faces"]) == 1
    capsys.readouterr()
    assert cli.main(["export", "--format", "tflite", "--model", str(tmp_path / "m.tflite"), str(tmp_path / "x")]) == 1
    _one_error_line(capsys.readouterr().err, "needs a Keras model")
    bench = tmp_path / "bench.json"
    args = ["benchmark", "--presets", "mobilefan_lite", "--variants", "tflite", "--threads", "1", "--runs", "3"]
    assert cli.main([*args, "--no_end_to_end", "--json", str(bench)]) == 0
    assert "| mobilefan_lite | tflite | 1 |" in capsys.readouterr().out
    row = json.loads(bench.read_text())[0]
    assert row["median_ms"] > 0 and row["gmacs"] > 0 and row["size_mb"] > 0
