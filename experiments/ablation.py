"""The cross-resolution distillation ablation (issue #11): run its rows, then report them.

Every row trains `mobilefan_lite` on the same split with the same schedule
(100 epochs, peak 2e-3, 3 warm-up epochs, cosine, batch 16: the shipped lite
model's); the teacher rows learn from the default model as shipped when the ablation
started (256 px, frozen; kept as ``results/ablation_models/teacher_default_stage4.keras``
so that every row has the same teacher after the default moved on).

    python -m experiments.ablation --run       # starts / resumes the rows, two at a time (days on 2 CPU cores)
    python -m experiments.ablation --run --parallel 1 --threads 2   # one row at a time on both cores
    python -m experiments.ablation --report    # scores the finished rows (flip test), writes the table
    python -m experiments.ablation --save_state  # before a session ends: what the unfinished rows need to resume

Rows are keyed by their flags, so a row that repeats another (``best`` with
``--best_terms kd`` is the ``kd`` row) shares its run. ``--run`` is the same
command every time: each row resumes from its work directory's backup, and a
finished row (``log.csv`` has every epoch, or the report has scored it) is
skipped. The report copies each row's log and flags to
``results/logs/ablation_cross_lite/`` and writes ``results/ablation_cross_lite.json`` and
``results/ablation_cross_lite.png`` (validation NME by epoch of every row);
groups of seeds get their mean and spread (max - min). A scored row that beats
the student-alone mean keeps its best model in ``results/ablation_models/`` (the
work directory does not outlive the session, and the winner is what ships).

A teacher row takes longer than a working session here (~3 h at one thread on
two shared AVX2 cores, beside another row), and only the repository outlives a session, so ``--save_state``
copies what an unfinished row needs to resume (``backup/``, ``best.keras``,
``best.json``, ``log.csv``, ``flags.json``; 10-20 MB) to
``results/ablation_state/<row>/``, to be committed; ``--run`` restores a row
from there when its work directory is gone. A row's state is deleted once the
report has scored it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_bool("run", False, "Start or resume the rows.")
flags.DEFINE_bool("report", False, "Score the finished rows and write the table.")
flags.DEFINE_bool("save_state", False, "Copy every unfinished row's resume state into results/ablation_state/.")
flags.DEFINE_string("root", "/work/runs/ablation_cross_lite", "One work directory per row under here.")
# kd_s1 before fad / fsd: the seed pair that tells whether the teacher pays at all comes first
# (with --best_terms kd, best_s0 / best_s1 are kd_s0 / kd_s1 and share their runs).
flags.DEFINE_list("rows", ["alone_s0", "kd_s0", "alone_s1", "kd_s1", "fad_s0", "fsd_s0", "best_s0", "best_s1"],
                  "Rows, in launch order.")
flags.DEFINE_list("best_terms", ["kd"], "The teacher terms of the `best` rows (kd, fad, fsd).")
flags.DEFINE_integer("parallel", 2, "Rows trained at once.")
flags.DEFINE_integer("threads", 1, "CPU threads of each row (a row restarted with another count resumes from its backup).")
flags.DEFINE_integer("row_epochs", 100, "Epochs of every row.")
flags.DEFINE_string("row_teacher", "results/ablation_models/teacher_default_stage4.keras",
                    "Teacher of the distillation rows (the stage-4 default, which every row so far learnt from).")
flags.DEFINE_enum("teacher_runtime", "keras", ["keras", "tflite"],
                  "Teacher runtime of the output-KD-only rows (distill --teacher_runtime; tflite: ~1.7x faster steps "
                  "on the CPU, same targets to 3e-6). Rows with FAD / FSD always run the Keras teacher.")
flags.DEFINE_string("results", "results", "Where the report goes.")
flags.DEFINE_string("baseline", None, "Another report's JSON whose student-alone mean is the bar for keeping models, when "
                    "these rows have no alone row (e.g. a longer-schedule KD row reported on its own).")
FLAGS = flags.FLAGS

# The measured weights (MODEL_CARD.md, "Gradient balance"): each term pulls ~0.35-1x the heatmap loss.
TERM_FLAGS = {"kd": ["--kd_weight=1"], "fad": ["--fa_weight=5e-5"], "fsd": ["--fs_weight=5e-3"]}


def row_command(row: str) -> tuple[str, list[str]]:
    """(run key, argv) of a row such as ``kd_s0``; rows with the same argv share the key."""
    kind, seed = row.rsplit("_s", 1)
    common = ["--preset=mobilefan_lite", f"--epochs={FLAGS.row_epochs}", "--learning_rate=2e-3", "--warmup_epochs=3",
              f"--seed={int(seed)}"]
    if kind == "alone":
        return f"alone_s{seed}", ["experiments.train_student", *common]
    terms = FLAGS.best_terms if kind == "best" else [kind]
    if not terms or any(t not in TERM_FLAGS for t in terms):
        raise app.UsageError(f"row {row}: terms must be among {sorted(TERM_FLAGS)}, got {terms}")
    weights = [f for t in sorted(terms) for f in TERM_FLAGS[t]]
    if "kd" not in terms:
        weights.append("--kd_weight=0")  # distill's default is 1
    elif terms == ["kd"] and FLAGS.teacher_runtime != "keras":
        weights.append(f"--teacher_runtime={FLAGS.teacher_runtime}")  # how the teacher runs, not what it computes
    return "+".join(sorted(terms)) + f"_s{seed}", ["experiments.distill", *common, f"--teacher={FLAGS.row_teacher}", *weights]


def epochs_done(workdir: str) -> int:
    path = os.path.join(workdir, "log.csv")
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        return len({row["epoch"] for row in csv.DictReader(f)})


STATE_FILES = ("backup", "best.keras", "best.json", "log.csv", "flags.json")


def state_dir(key: str) -> str:
    return os.path.join(FLAGS.results, "ablation_state", key)


def scored_rows() -> dict:
    """The report's rows so far ({} before the first report)."""
    path = os.path.join(FLAGS.results, "ablation_cross_lite.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return {e["run"]: e for e in json.load(f)["rows"].values() if "nme_flip" in e}


def copy_state(src: str, dst: str) -> None:
    os.makedirs(dst, exist_ok=True)
    for name in STATE_FILES:
        a, b = os.path.join(src, name), os.path.join(dst, name)
        if os.path.isdir(a):
            shutil.copytree(a, b, dirs_exist_ok=True)
        elif os.path.isfile(a):
            shutil.copy2(a, b)


def save_state() -> None:
    for key in dict.fromkeys(row_command(row)[0] for row in FLAGS.rows):  # rows sharing a run: once
        workdir = os.path.join(FLAGS.root, key)
        done = epochs_done(workdir)
        if 0 < done < FLAGS.row_epochs:
            shutil.rmtree(state_dir(key), ignore_errors=True)
            copy_state(workdir, state_dir(key))
            print(f"{key}: state of epoch {done} saved to {state_dir(key)}")


def restore_state(key: str, workdir: str) -> bool:
    """Recreates a lost work directory from the saved state; True if it did."""
    if os.path.isdir(workdir) or not os.path.isdir(state_dir(key)):
        return False
    copy_state(state_dir(key), workdir)
    print(f"{key}: resumed from {state_dir(key)} (epoch {epochs_done(workdir)})", flush=True)
    return True


def run_rows() -> None:
    threads = str(FLAGS.threads)
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # 1.8x on the teacher's forward pass on AVX2 (WORKSPACE.md)
    todo, seen, scored = [], set(), scored_rows()
    for row in FLAGS.rows:
        key, argv = row_command(row)
        workdir = os.path.join(FLAGS.root, key)
        restore_state(key, workdir)
        if key in seen or key in scored or epochs_done(workdir) >= FLAGS.row_epochs:
            continue
        seen.add(key)
        todo.append((key, [sys.executable, "-m", *argv, f"--workdir={workdir}"], workdir))
    running: list[tuple[str, subprocess.Popen]] = []
    os.makedirs(FLAGS.root, exist_ok=True)
    while todo or running:
        while todo and len(running) < FLAGS.parallel:
            key, argv, workdir = todo.pop(0)
            print(f"start {key}: {' '.join(argv[2:])}", flush=True)
            log = open(os.path.join(FLAGS.root, f"{key}.log"), "a")  # noqa: SIM115 (closed with the process)
            running.append((key, subprocess.Popen(["nice", "-n", "19", *argv], stdout=log, stderr=log, env=env)))
        time.sleep(30)
        for key, proc in list(running):
            if proc.poll() is not None:
                running.remove((key, proc))
                print(f"{key}: exit {proc.returncode}, {epochs_done(os.path.join(FLAGS.root, key))} epochs", flush=True)


def plot_curves(logs: str, keys: list[str], path: str) -> dict[str, tuple[list[int], list[float]]]:
    """Validation NME (one pass) by epoch of each run's ``<key>.log.csv`` under `logs`, on one plot.

    Returns:
        {run: (epochs, val_nme)} as plotted (runs without a log are left out).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for key in keys:
        log = os.path.join(logs, f"{key}.log.csv")
        if not os.path.isfile(log):
            continue
        by_epoch = {}
        with open(log) as f:
            for row in csv.DictReader(f):
                by_epoch[int(row["epoch"])] = float(row["val_nme"])  # a resumed epoch: its last entry
        curves[key] = (sorted(by_epoch), [by_epoch[e] for e in sorted(by_epoch)])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {}  # one colour per kind of row (alone, kd, ...), one line style per seed
    for key, (epochs, nme) in curves.items():
        kind, seed = key.rsplit("_s", 1)
        colour = colours.setdefault(kind, f"C{len(colours)}")
        ax.plot([e + 1 for e in epochs], [100 * v for v in nme], ("-", "--", ":")[int(seed) % 3], color=colour, label=key, lw=1.2)
    ax.set(xlabel="epoch", ylabel="validation NME, one pass (%)", title="mobilefan_lite: student alone vs distilled",
           ylim=(3.5, 6.0))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return curves


def baseline_alone(path: str) -> dict:
    """The student-alone group ({"mean", ...}) of another report's JSON; one-line error when it has none."""
    try:
        with open(path) as f:
            return json.load(f)["groups"]["alone"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise app.UsageError(f"--baseline {path}: not a report with a student-alone group ({err!r})") from None


def keep_candidates(rows: dict, groups: dict) -> list[str]:
    """Copies the best model of every scored row that beats the student-alone mean to
    ``results/ablation_models/<run>.keras`` (~2.7 MB each): a finished row's work
    directory is lost when its session ends, and the winner is what gets shipped. Without an
    alone row here, the bar is ``--baseline``'s alone mean (none given: nothing is kept)."""
    if "alone" not in groups and FLAGS.baseline:
        groups = {"alone": baseline_alone(FLAGS.baseline)}
    if "alone" not in groups:
        return []
    kept = []
    for row, entry in rows.items():
        best = os.path.join(FLAGS.root, entry["run"], "best.keras")
        if row.startswith("alone") or entry.get("nme_flip", 1.0) >= groups["alone"]["mean"] or not os.path.isfile(best):
            continue
        dst = os.path.join(FLAGS.results, "ablation_models", f"{entry['run']}.keras")
        if dst not in kept:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(best, dst)
            kept.append(dst)
    return kept


def report_rows() -> None:
    logs = os.path.join(FLAGS.results, "logs", "ablation_cross_lite")
    os.makedirs(logs, exist_ok=True)
    rows, previous = {}, scored_rows()
    for row in FLAGS.rows:
        key, argv = row_command(row)
        workdir = os.path.join(FLAGS.root, key)
        done = epochs_done(workdir)
        entry = {"run": key, "flags": argv[1:], "epochs_done": done}
        if key in previous and not os.path.isfile(os.path.join(workdir, "best.keras")):
            rows[row] = previous[key]  # scored in an earlier session, its work directory gone since
            continue
        if done >= FLAGS.row_epochs and os.path.isfile(os.path.join(workdir, "best.keras")):
            scores = os.path.join(workdir, "eval", "results.json")
            if not os.path.isfile(scores):
                subprocess.run([sys.executable, "-m", "experiments.evaluate", "--split=val", "--flip_test=both",
                                f"--model={os.path.join(workdir, 'best.keras')}", f"--workdir={os.path.dirname(scores)}"],
                               check=True)  # fmt: skip
            with open(scores) as f:
                summary = json.load(f)["summary"]
            flip = next(v for v in summary.values() if v["flip_test"])
            one = next(v for v in summary.values() if not v["flip_test"])
            entry.update(nme_flip=flip["nme"], nme=one["nme"], fr_flip=flip["failure_rate"], auc_flip=flip["auc"])
        for name in ("log.csv", "flags.json", "best.json"):
            if os.path.isfile(os.path.join(workdir, name)):
                shutil.copy(os.path.join(workdir, name), os.path.join(logs, f"{key}.{name}"))
        if "nme_flip" in entry:
            shutil.rmtree(state_dir(key), ignore_errors=True)
        rows[row] = entry
    groups = {}
    for row, entry in rows.items():
        if "nme_flip" in entry:
            groups.setdefault(row.rsplit("_s", 1)[0], []).append(entry["nme_flip"])
    spread = {g: {"seeds": len(v), "mean": sum(v) / len(v), "spread": max(v) - min(v)} for g, v in groups.items()}
    out = {"rows": rows, "groups": spread, "best_terms": FLAGS.best_terms}
    for path in keep_candidates(rows, spread):
        print(f"kept {path}")
    runs = list(dict.fromkeys(e["run"] for e in rows.values()))  # best_s0 is kd_s0's run: one curve
    plot_curves(logs, runs, os.path.join(FLAGS.results, "ablation_cross_lite.png"))
    with open(os.path.join(FLAGS.results, "ablation_cross_lite.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("| row | run | epochs | val NME, flip test | one pass |\n|---|---|---|---|---|")
    for row, e in rows.items():
        nme = f"{100 * e['nme_flip']:.2f} %" if "nme_flip" in e else "running"
        one = f"{100 * e['nme']:.2f} %" if "nme" in e else ""
        print(f"| {row} | {e['run']} | {e['epochs_done']}/{FLAGS.row_epochs} | {nme} | {one} |")
    for g, s in spread.items():
        print(f"{g}: mean {100 * s['mean']:.2f} %, spread {100 * s['spread']:.2f} points over {s['seeds']} seed(s)")


def main(_):
    if FLAGS.run + FLAGS.report + FLAGS.save_state != 1:
        raise app.UsageError("pass exactly one of --run, --report and --save_state")
    if FLAGS.run:
        run_rows()
    elif FLAGS.report:
        if FLAGS.baseline:
            baseline_alone(FLAGS.baseline)  # a bad file fails here, before the rows are scored
        report_rows()
    else:
        save_state()


if __name__ == "__main__":
    app.run(main)
