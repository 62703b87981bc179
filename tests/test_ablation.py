"""experiments/ablation.py: rows map to the right flags; repeated rows share one run; finished rows are skipped;
rows that beat the baseline keep their model."""

import pytest
from absl import flags

from experiments import ablation

FLAGS = flags.FLAGS


@pytest.fixture
def parsed():
    FLAGS(["ablation", "--best_terms=kd"])
    yield
    FLAGS.unparse_flags()


def test_rows_map_to_flags_and_share_runs(parsed):
    key, argv = ablation.row_command("alone_s1")
    assert key == "alone_s1" and argv[0] == "experiments.train_student" and "--seed=1" in argv
    key, argv = ablation.row_command("fad_s0")
    assert key == "fad_s0" and argv[0] == "experiments.distill"
    assert "--fa_weight=5e-5" in argv and "--kd_weight=0" in argv  # distill's KD default is switched off
    assert ablation.row_command("best_s0") == ablation.row_command("kd_s0")  # --best_terms kd: the kd row
    FLAGS.best_terms = ["fsd", "kd"]
    key, argv = ablation.row_command("best_s1")
    assert key == "fsd+kd_s1" and "--fs_weight=5e-3" in argv and "--kd_weight=1" in argv
    assert "--kd_weight=0" not in argv
    assert not any(a.startswith("--teacher_runtime") for a in argv)
    FLAGS.teacher_runtime = "tflite"  # output-KD rows only, same run key (a row resumes under either runtime)
    key, argv = ablation.row_command("kd_s0")
    assert key == "kd_s0" and argv[-2:] == ["--kd_weight=1", "--teacher_runtime=tflite"]
    assert "--teacher_runtime=tflite" not in ablation.row_command("best_s1")[1]  # FSD needs the Keras teacher
    FLAGS.best_terms = ["dark"]
    with pytest.raises(Exception, match="terms must be among"):
        ablation.row_command("best_s0")


def test_epochs_done_counts_distinct_epochs(tmp_path):
    (tmp_path / "log.csv").write_text("epoch,loss\n0,1\n1,0.5\n1,0.5\n")  # a resumed epoch is logged twice
    assert ablation.epochs_done(str(tmp_path)) == 2
    assert ablation.epochs_done(str(tmp_path / "missing")) == 0


def test_state_survives_a_lost_work_directory(parsed, tmp_path):
    FLAGS.root, FLAGS.results = str(tmp_path / "runs"), str(tmp_path / "results")
    workdir = tmp_path / "runs" / "kd_s0"
    (workdir / "backup").mkdir(parents=True)
    (workdir / "backup" / "latest.weights.h5").write_bytes(b"weights")
    (workdir / "log.csv").write_text("epoch,loss\n0,1\n1,0.5\n")
    (workdir / "last.keras").write_bytes(b"not needed to resume")
    (tmp_path / "runs" / "alone_s0").mkdir()
    (tmp_path / "runs" / "alone_s0" / "log.csv").write_text("epoch\n" + "".join(f"{e}\n" for e in range(100)))
    ablation.save_state()
    assert (tmp_path / "results" / "ablation_state" / "kd_s0" / "backup" / "latest.weights.h5").read_bytes() == b"weights"
    assert not (tmp_path / "results" / "ablation_state" / "kd_s0" / "last.keras").exists()
    assert not (tmp_path / "results" / "ablation_state" / "alone_s0").exists()  # finished: nothing to resume
    import shutil

    shutil.rmtree(workdir)  # a new session: the work directory is gone
    assert ablation.restore_state("kd_s0", str(workdir))
    assert ablation.epochs_done(str(workdir)) == 2
    assert not ablation.restore_state("kd_s0", str(workdir))  # present: left alone


def test_curves_plot_each_runs_last_entry_per_epoch(tmp_path):
    head = "epoch,loss,nme,val_loss,val_nme\n"
    (tmp_path / "alone_s0.log.csv").write_text(head + "0,1,0.1,1,0.09\n1,1,0.1,1,0.07\n")
    # kd_s0 was killed in epoch 1 and resumed: epoch 1 is logged twice, the later row counts.
    (tmp_path / "kd_s0.log.csv").write_text(head + "0,1,0.1,1,0.08\n1,1,0.1,1,0.2\n1,1,0.1,1,0.06\n2,1,0.1,1,0.05\n")
    png = tmp_path / "curves.png"
    curves = ablation.plot_curves(str(tmp_path), ["alone_s0", "kd_s0", "fad_s0"], str(png))
    assert curves == {"alone_s0": ([0, 1], [0.09, 0.07]), "kd_s0": ([0, 1, 2], [0.08, 0.06, 0.05])}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rows_beating_the_baseline_keep_their_model(parsed, tmp_path):
    FLAGS.root, FLAGS.results = str(tmp_path / "runs"), str(tmp_path / "results")
    for run in ("kd_s0", "fad_s0", "alone_s0"):
        (tmp_path / "runs" / run).mkdir(parents=True)
        (tmp_path / "runs" / run / "best.keras").write_bytes(run.encode())
    rows = {
        "alone_s0": {"run": "alone_s0", "nme_flip": 0.0394},
        "kd_s0": {"run": "kd_s0", "nme_flip": 0.0386},
        "best_s0": {"run": "kd_s0", "nme_flip": 0.0386},  # the same run: copied once
        "fad_s0": {"run": "fad_s0", "nme_flip": 0.0401},  # worse than alone: not kept
        "fsd_s0": {"run": "fsd_s0"},  # running
    }
    kept = ablation.keep_candidates(rows, {"alone": {"mean": 0.0396}})
    assert kept == [str(tmp_path / "results" / "ablation_models" / "kd_s0.keras")]
    assert (tmp_path / "results" / "ablation_models" / "kd_s0.keras").read_bytes() == b"kd_s0"
    assert ablation.keep_candidates(rows, {}) == []  # no baseline scored yet: nothing to compare
    # A row reported on its own (a longer schedule) is measured against another report's alone mean.
    (tmp_path / "other.json").write_text('{"groups": {"alone": {"mean": 0.0390}}}')
    FLAGS.baseline, FLAGS.results = str(tmp_path / "other.json"), str(tmp_path / "results_long")
    kept = ablation.keep_candidates({"kd_s0": rows["kd_s0"], "fad_s0": rows["fad_s0"]}, {})
    assert kept == [str(tmp_path / "results_long" / "ablation_models" / "kd_s0.keras")]
    (tmp_path / "no_alone.json").write_text('{"groups": {"kd": {"mean": 0.0387}}}')
    FLAGS.baseline = str(tmp_path / "no_alone.json")
    with pytest.raises(Exception, match="--baseline .*no_alone.json: not a report with a student-alone group"):
        ablation.keep_candidates({"kd_s0": rows["kd_s0"]}, {})
