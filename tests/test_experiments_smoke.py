"""`--smoke` runs of the five experiment scripts, as a user would start them.

The scripts run in subprocesses from the repository root and feed each other:
the teacher trained here is distilled, the students are evaluated and exported.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(name, *args, timeout=300):
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    print(f"{name}: {time.time() - t0:.0f}s")
    return proc


def check_ok(proc):
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def check_training_run(workdir, columns):
    for f in ("best.keras", "last.keras", "log.csv", "train_list.txt", "val_list.txt", "flags.json", "tb"):
        assert os.path.exists(workdir / f), f
    with open(workdir / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert set(columns) <= set(rows[0])
    train = set((workdir / "train_list.txt").read_text().split())
    val = set((workdir / "val_list.txt").read_text().split())
    assert val and train and not train & val


@pytest.mark.slow
def test_train_teacher_smoke(runs):
    check_ok(run_script("train_teacher", "--smoke", f"--workdir={runs / 'teacher'}"))
    # The hourglass has two supervised stacks: NME is logged on the last one.
    check_training_run(runs / "teacher", ["loss", "val_loss"])


@pytest.mark.slow
def test_train_student_smoke(runs):
    check_ok(run_script("train_student", "--smoke", f"--workdir={runs / 'student'}", "--keep_epoch_weights"))
    check_training_run(runs / "student", ["loss", "nme", "val_loss", "val_nme"])
    assert sorted(os.listdir(runs / "student" / "epochs")) == ["epoch_001.weights.h5", "epoch_002.weights.h5"]


@pytest.mark.slow
def test_average_weights_smoke(runs):
    workdir = runs / "student"
    if not (workdir / "epochs").is_dir():
        pytest.skip("needs test_train_student_smoke's run")
    check_ok(run_script("average_weights", "--smoke", f"--workdir={workdir}", "--bn_batches=3"))
    summary = json.loads((workdir / "averaged.json").read_text())
    assert summary["epochs"] == [1, 2] and summary["bn_batches"] == 3
    assert set(summary["epoch_val_nme"]) == {"1", "2"}
    assert 0 < summary["val_nme"] < 1 and 0 < summary["val_nme_flip_test"] < 1
    assert os.path.isfile(workdir / "averaged.keras")
    proc = run_script("average_weights", "--smoke", f"--workdir={workdir}", "--first_epoch=5")
    assert proc.returncode != 0 and "no epoch_NNN.weights.h5" in proc.stderr + proc.stdout
    broken = runs / "broken_average"
    (broken / "epochs").mkdir(parents=True)
    shutil.copy(workdir / "epochs" / "epoch_001.weights.h5", broken / "epochs")
    (broken / "last.keras").write_bytes(b"not a zip")
    proc = run_script("average_weights", "--smoke", f"--workdir={broken}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{broken / 'last.keras'}: cannot load" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_distill_smoke(runs):
    teacher = runs / "teacher" / "best.keras"
    proc = run_script("distill", "--smoke", f"--teacher={teacher}", "--fs_pool_size=2", "--fa_weight=0.01",
                      "--fs_weight=0.001", "--kd_weight=1", f"--workdir={runs / 'distill'}", "--keep_epoch_weights")
    check_ok(proc)
    # Epoch weights are the student's alone (not the adaptors'): the last one is last.keras's weights,
    # so experiments.average_weights can average them into it.
    assert sorted(os.listdir(runs / "distill" / "epochs")) == ["epoch_001.weights.h5", "epoch_002.weights.h5"]
    import keras

    import mobilefan_tf.models  # noqa: F401 - registers the model classes

    student = keras.saving.load_model(runs / "distill" / "last.keras", compile=False)
    last = student.get_weights()
    student.load_weights(runs / "distill" / "epochs" / "epoch_002.weights.h5")
    for got, want in zip(student.get_weights(), last, strict=True):
        np.testing.assert_array_equal(got, want)
    check_training_run(
        runs / "distill", ["loss", "heatmap_loss", "fa_loss", "fs_loss", "kd_loss", "nme", "val_fa_loss", "val_fs_loss",
                           "val_kd_loss", "val_nme"]
    )


@pytest.mark.slow
def test_distill_smoke_with_the_tflite_teacher(runs):
    """Output KD with the teacher run by TFLite in the input pipeline (FAD / FSD refused: the test below)."""
    teacher = runs / "teacher" / "best.keras"
    proc = run_script("distill", "--smoke", f"--teacher={teacher}", "--teacher_runtime=tflite", "--kd_weight=1",
                      f"--workdir={runs / 'distill_tflite'}")
    check_ok(proc)
    assert "float32 TFLite in the input pipeline" in proc.stdout
    check_training_run(runs / "distill_tflite", ["loss", "heatmap_loss", "kd_loss", "val_kd_loss", "val_nme"])
    with open(runs / "distill_tflite" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["kd_loss"]) > 0 and float(r["val_kd_loss"]) > 0 for r in rows)


@pytest.mark.slow
def test_evaluate_smoke(runs):
    models = [f"--model={runs / d / 'best.keras'}" for d in ("student", "distill")]
    check_ok(run_script("evaluate", "--smoke", *models, f"--workdir={runs / 'eval'}", "--face_size=12"))
    result = json.loads((runs / "eval" / "results.json").read_text())
    assert set(result["models"]) == {"student_best", "distill_best"}
    assert set(result["summary"]) == {"student_best", "distill_best", "student_best@12px", "distill_best@12px"}
    for name in ("student_best", "distill_best"):  # 12 px faces lose detail: not the full-size score
        small, full = result["summary"][f"{name}@12px"], result["summary"][name]
        assert small["num_images"] == full["num_images"] and small["nme"] != full["nme"]
    for res in result["models"].values():
        assert {"nme", "failure_rate", "auc", "per_image"} <= set(res)
        assert len(res["per_image"]) == res["num_images"] > 0
    for f in ("ced.png", "overlay_student_best.png", "overlay_distill_best.png"):
        assert (runs / "eval" / f).stat().st_size > 0


@pytest.mark.slow
def test_export_smoke(runs):
    model = runs / "distill" / "best.keras"
    check_ok(run_script("export", "--smoke", f"--model={model}", f"--workdir={runs / 'export'}"))
    assert (runs / "export" / "saved_model" / "saved_model.pb").exists()
    assert (runs / "export" / "model_none.tflite").stat().st_size > 0


def test_distill_needs_a_teacher(tmp_path):
    proc = run_script("distill", f"--workdir={tmp_path}")
    assert proc.returncode != 0 and "--teacher" in proc.stderr


def test_distill_tflite_teacher_refuses_fad_before_loading_anything(tmp_path):
    proc = run_script("distill", "--smoke", "--teacher_runtime=tflite", "--fa_weight=0.01", f"--workdir={tmp_path}")
    assert proc.returncode != 0 and "output KD only" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path)  # refused before the work directory was written


def test_missing_data_dir_is_one_clear_error(tmp_path):
    proc = run_script("train_student", f"--data_dir={tmp_path / 'nope'}", f"--workdir={tmp_path / 'w'}")
    assert proc.returncode != 0
    assert f"{tmp_path / 'nope'}: dataset folder not found" in proc.stderr and "Traceback" not in proc.stderr
