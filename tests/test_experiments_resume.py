"""A training run killed with SIGKILL resumes from its backup and finishes the planned epochs."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 5


def logged_epochs(log):
    if not log.exists():
        return []
    with open(log) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch")]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_student", "distill"])
def test_killed_run_resumes(tmp_path, script):
    workdir = tmp_path / "run"
    log = workdir / "log.csv"
    cmd = [sys.executable, "-m", f"experiments.{script}", "--smoke", f"--epochs={EPOCHS}", f"--workdir={workdir}"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while len(logged_epochs(log)) < 2:  # watch the CSV log for the second epoch
            assert proc.poll() is None, "run ended before its second epoch"
            assert time.time() < deadline, "no second epoch within 300 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed_at = logged_epochs(log)
    assert 2 <= len(killed_at) < EPOCHS, killed_at  # it really was interrupted

    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs = logged_epochs(log)
    assert sorted(set(epochs)) == list(range(EPOCHS))  # every epoch ran, ending at the planned total
    assert epochs[-1] == EPOCHS - 1
    assert len(epochs) - EPOCHS <= 1  # at most one epoch was run twice (lost by the kill)
    assert epochs[: len(killed_at)] == killed_at  # the first run's log is kept (appended to)
