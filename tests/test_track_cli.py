"""`mobilefan track` on generated videos, its bad-input handling, and `mobilefan predict DIR`."""

import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from mobilefan_tf import cli
from mobilefan_tf.bulk import predict_files
from mobilefan_tf.data import read_300w
from mobilefan_tf.data.motion import moving_face_video
from mobilefan_tf.default_model import ASSETS_DIR
from mobilefan_tf.metrics import nme_per_image
from mobilefan_tf.predictor import Predictor, read_image

LITE = os.path.join(ASSETS_DIR, "mobilefan_lite_300w_int8.tflite")  # shipped, ~8 ms per face
HAS_DLIB = importlib.util.find_spec("dlib") is not None


def write_video(path, frames, fps=30.0, codec="MJPG"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def one_error_line(err: str, *fragments: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("mobilefan: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def only(folder, *names):
    """The folder holds exactly these files (no half-written outputs, no temporary files)."""
    assert sorted(os.listdir(folder)) == sorted(names)


@pytest.fixture(scope="module")
def face_clip(w300_dir, tmp_path_factory):
    """20 frames (240x320) of a real 300W face panning, zooming and rotating, and the true landmarks."""
    sample = read_300w(w300_dir / "300W-train")[3]
    frames, truth = moving_face_video(read_image(sample.image_path), sample.landmarks, num_frames=20,
                                      size=(240, 320), face_side=100, pan=(50, 20), zoom=0.15, rotation_deg=10)
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    write_video(path, frames)
    return path, truth


@pytest.mark.skipif(not HAS_DLIB, reason="needs the default face detector (dlib)")
def test_track_video_writes_parsable_jsonl_csv_and_annotated_video(face_clip, tmp_path, capsys):
    clip, truth = face_clip
    jsonl, table, video = tmp_path / "lm.jsonl", tmp_path / "lm.csv", tmp_path / "out.mp4"
    code = cli.main(["track", str(clip), "--model", LITE, "--no_flip", "--max_faces", "1",
                     "--jsonl", str(jsonl), "--csv", str(table), "--video", str(video)])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(20))
    assert all(len(r["faces"]) == 1 and r["faces"][0]["id"] == 0 for r in records)
    assert records[0]["faces"][0]["detected"] and not any(r["faces"][0]["detected"] for r in records[1:])
    pred = np.array([r["faces"][0]["landmarks"] for r in records], np.float32)
    assert pred.shape == (20, 68, 2)
    assert nme_per_image(pred, truth, 68).mean() < 0.08  # the lite model follows the moving face
    rows = table.read_text().splitlines()
    assert len(rows) == 21 and len(rows[0].split(",")) == 5 + 136
    np.testing.assert_allclose(np.array(rows[5].split(",")[5:], float).reshape(68, 2), pred[4], atol=0.01)
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    only(tmp_path, "lm.jsonl", "lm.csv", "out.mp4")
    assert "20 frames" in capsys.readouterr().out


def test_track_unopenable_video_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    out.mkdir()
    code = cli.main(["track", str(tmp_path / "junk.mp4"), "--model", LITE, "--jsonl", str(out / "a.jsonl"),
                     "--video", str(out / "a.mp4")])
    assert code == 1
    one_error_line(capsys.readouterr().err, "junk.mp4", "cannot be opened")
    only(out)
    assert cli.main(["track", str(tmp_path / "missing.avi"), "--model", LITE]) == 1
    one_error_line(capsys.readouterr().err, "missing.avi", "no such")


def test_track_absent_webcam_is_one_line(tmp_path, capsys):
    code = cli.main(["track", "57", "--model", LITE, "--jsonl", str(tmp_path / "a.jsonl")])
    assert code == 1
    one_error_line(capsys.readouterr().err, "webcam 57", "cannot be opened")
    only(tmp_path)


@pytest.mark.skipif(not HAS_DLIB, reason="needs the default face detector (dlib)")
def test_track_frame_that_fails_to_decode_writes_nothing(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "broken.avi"
    write_video(path, rng.integers(0, 255, (10, 48, 64, 3), dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    starts = [i for i in range(len(raw) - 1) if raw[i] == 0xFF and raw[i + 1] == 0xD8]  # one JPEG per frame
    assert len(starts) == 10
    raw[starts[5] : starts[5] + 400] = bytes(400)  # frame 5's JPEG header and tables
    path.write_bytes(bytes(raw))
    out = tmp_path / "out"
    out.mkdir()
    code = cli.main(["track", str(path), "--model", LITE, "--jsonl", str(out / "a.jsonl"), "--video", str(out / "a.avi")])
    assert code == 1
    one_error_line(capsys.readouterr().err, "broken.avi", "frame 5 of 10 failed to decode")
    only(out)


@pytest.mark.skipif(not HAS_DLIB, reason="needs the default face detector (dlib)")
def test_track_folder_with_a_corrupt_frame_names_it(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        Image.fromarray(np.full((40, 60, 3), 30 * i, np.uint8)).save(frames / f"f{i}.png")
    (frames / "f2.png").write_bytes((frames / "f2.png").read_bytes()[:30])
    code = cli.main(["track", str(frames), "--model", LITE, "--jsonl", str(tmp_path / "a.jsonl")])
    assert code == 1
    one_error_line(capsys.readouterr().err, "f2.png", "frame 2", "failed to decode")
    only(tmp_path, "frames")


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    """photos/a.png, photos/sub/b.jpg, photos/sub/deeper/c.png, a corrupt photos/sub/bad.jpg and a notes.txt."""
    root = tmp_path_factory.mktemp("tree") / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    photo = data.astronaut()[:300, 100:400]
    Image.fromarray(photo).save(root / "a.png")
    Image.fromarray(photo[:, ::-1]).save(root / "sub" / "b.jpg")
    Image.fromarray(photo[20:280, 20:280]).save(root / "sub" / "deeper" / "c.png")
    (root / "sub" / "bad.jpg").write_bytes((root / "sub" / "b.jpg").read_bytes()[:200])
    (root / "notes.txt").write_text("not a photo, not looked at")
    return root


def test_predict_dir_skips_the_corrupt_file_reports_it_and_exits_1(photo_tree, tmp_path, capsys):
    out = tmp_path / "faces.jsonl"
    code = cli.main(["predict", str(photo_tree), "--model", LITE, "--no_flip", "--boxes", "40,60,200,240",
                     "--jsonl", str(out), "--batch_size", "2"])
    assert code == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 2 and "bad.jpg" in err[0] and err[0].startswith("mobilefan: error: ")
    assert err[1] == "mobilefan: 1 of 4 image(s) failed"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    names = [os.path.relpath(r["image"], photo_tree) for r in records]
    assert names == ["a.png", os.path.join("sub", "b.jpg"), os.path.join("sub", "deeper", "c.png")]
    assert all(len(r["faces"]) == 1 and np.array(r["faces"][0]["landmarks"]).shape == (68, 2) for r in records)
    assert records[0]["width"] == 300 and records[2]["width"] == 260


def test_predict_files_batches_across_photos_like_predictor(photo_tree):
    predictor = Predictor(LITE, flip_test=False)
    paths = [str(photo_tree / "a.png"), str(photo_tree / "sub" / "b.jpg"), str(photo_tree / "sub" / "deeper" / "c.png")]
    boxes = [[40, 60, 200, 240], [90, 50, 250, 230]]
    calls = []
    model = predictor.model
    real = model.predict_landmarks
    model.predict_landmarks = lambda images, **kw: calls.append(len(images)) or real(images, **kw)
    try:
        got = list(predict_files(predictor, paths, batch_size=4, boxes=boxes))
    finally:
        del model.predict_landmarks
    assert calls == [4, 2]  # 6 faces from 3 photos in two model calls
    for _, photo, faces in got:
        expected = predictor.predict(photo, boxes=boxes)
        for f, e in zip(faces, expected, strict=True):
            np.testing.assert_allclose(f["landmarks"], e["landmarks"], atol=1e-4)
            np.testing.assert_allclose(f["scores"], e["scores"], atol=1e-6)
    assert [p for p, _, _ in got] == paths


def test_track_bad_filter_parameter_is_one_line(tmp_path, capsys):
    clip = tmp_path / "c.avi"
    write_video(clip, np.zeros((2, 32, 32, 3), np.uint8))
    assert cli.main(["track", str(clip), "--model", LITE, "--min_cutoff", "0"]) == 1
    one_error_line(capsys.readouterr().err, "track", "min_cutoff > 0")


def test_track_help_lists_the_filter_parameters(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["track", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--min_cutoff", "--beta", "--d_cutoff", "--min_speed", "--jsonl", "--csv", "--video"))
