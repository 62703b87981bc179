"""The `mobilefan` command: predict, track, evaluate, export and benchmark.

Errors print one line, ``mobilefan: error: <file>: <problem>``, on stderr and
exit non-zero; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

PROG = "mobilefan"


class CliError(Exception):
    """An error reported as one line: ``<where>: <problem>``."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")


def _box(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
        raise argparse.ArgumentTypeError(f"bad box {text!r}: want x0,y0,x1,y1 with x1>x0, y1>y0")
    return values


def _model_path(args) -> str:
    if args.model:
        return args.model
    from mobilefan_tf.default_model import NoDefaultModelError, default_model_path

    try:
        return default_model_path()
    except NoDefaultModelError as err:
        raise CliError("--model", str(err)) from None


def _load(path: str, threads: int = 1):
    from mobilefan_tf.predictor import load_landmark_model

    try:
        return load_landmark_model(path, num_threads=threads)
    except (OSError, ValueError) as err:
        raise CliError(path, str(err).removeprefix(f"cannot load model {path}: ")) from None


def _predictor(args):
    """The Predictor of predict / demo: --model (default: the shipped int8 TFLite), --detector, --no_flip, --max_faces,
    --no_verify."""
    from mobilefan_tf.default_model import NoDefaultModelError
    from mobilefan_tf.detector import make_detector
    from mobilefan_tf.predictor import Predictor, default_predictor_model

    if args.model:
        model = _load(args.model, args.threads)
    else:
        try:
            model = default_predictor_model(args.threads)
        except NoDefaultModelError as err:
            raise CliError("--model", str(err)) from None
    max_faces = getattr(args, "max_faces", None)
    if max_faces is not None and max_faces < 1:
        raise CliError("--max_faces", f"want >= 1 (got {max_faces})")
    try:
        detector = make_detector(args.detector, args.threads, max_faces) if not getattr(args, "boxes", None) else None
    except (OSError, ValueError, ImportError) as err:
        raise CliError(f"--detector {args.detector}", str(err).removeprefix(f"{args.detector}: ")) from None
    verify = not getattr(args, "no_verify", False)
    return Predictor(model, detector=detector, flip_test=not args.no_flip, max_faces=max_faces, verify=verify)


def draw_faces(image: np.ndarray, faces: list[dict], path: str) -> str:
    """Saves the photo with each face's box (green) and landmarks (red)."""
    import cv2
    from PIL import Image

    canvas = np.ascontiguousarray(image.copy())
    size = max(image.shape[:2])
    radius, thick = max(1, round(size / 300)), max(1, round(size / 400))
    for face in faces:
        x0, y0, x1, y1 = (round(v) for v in face["box"])
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 255, 0), thick)
        for x, y in face["landmarks"]:
            cv2.circle(canvas, (round(float(x)), round(float(y))), radius, (255, 0, 0), -1)
    Image.fromarray(canvas).save(path)
    return path


def _draw_path(out: str, image: str, several: bool) -> str:
    if not several:
        return out
    stem, ext = os.path.splitext(out)
    return f"{stem}_{os.path.splitext(os.path.basename(image))[0]}{ext or '.png'}"


def _write_json(path: str, data) -> None:
    text = json.dumps(data, indent=1)
    if path == "-":
        print(text)
        return
    with open(path, "w") as f:
        f.write(text + "\n")


def cmd_predict(args) -> int:
    from mobilefan_tf.predictor import read_image

    if any(os.path.isdir(p) for p in args.images):
        return cmd_predict_dir(args)
    predictor = _predictor(args)
    results, failed = [], 0
    for image_path in args.images:
        try:
            image = read_image(image_path)
            faces = predictor.predict(image, boxes=args.boxes)
        except (OSError, ValueError, ImportError) as err:
            _error(CliError(image_path, str(err)), args.debug, cause=err)
            failed += 1
            continue
        if not faces:
            print(f"{PROG}: {image_path}: no face found", file=sys.stderr)
        record = {
            "image": image_path,
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "faces": _face_records(faces),
        }
        results.append(record)
        if args.draw:
            draw_faces(image, faces, _draw_path(args.draw, image_path, len(args.images) > 1))
        if not args.json:
            print(f"{image_path}: {len(faces)} face(s)" + "".join(f"; box {r['box']}" for r in record["faces"]))
    if args.json and results:
        _write_json(args.json, results[0] if len(args.images) == 1 else results)
    return 1 if failed else 0


def _face_records(faces: list[dict]) -> list[dict]:
    """JSON records of `Predictor` faces; ``detector_score`` only where the detector gave one."""
    records = []
    for f in faces:
        record = {
            "box": [round(float(v), 2) for v in f["box"]],
            "landmarks": np.round(f["landmarks"].astype(np.float64), 2).tolist(),
            "scores": np.round(np.asarray(f["scores"], np.float64), 4).tolist(),
        }
        score = f.get("detector_score")
        if score is not None and np.isfinite(score):
            record["detector_score"] = round(float(score), 4)
        records.append(record)
    return records


def cmd_predict_dir(args) -> int:
    """`predict` over folders (recursive) and photos: batched model calls, JSON lines, bad files skipped."""
    import contextlib

    from tqdm import tqdm

    from mobilefan_tf.bulk import predict_files
    from mobilefan_tf.video import atomic_output, json_line, list_images

    if args.draw:
        raise CliError("--draw", "draws one photo; not available with a folder (use --jsonl)")
    if args.json:
        raise CliError("--json", "with a folder, write JSON lines with --jsonl OUT")
    paths, failed = [], 0
    for item in args.images:
        found = list_images(item, recursive=True) if os.path.isdir(item) else [item]
        if not found:
            print(f"{PROG}: error: {item}: folder has no images", file=sys.stderr)
            failed += 1
        paths += found
    predictor = _predictor(args)

    def report(path: str, err: Exception) -> None:
        nonlocal failed
        failed += 1
        tqdm.write(f"{PROG}: error: {' '.join(f'{path}: {err}'.split())}", file=sys.stderr)

    with contextlib.ExitStack() as stack:
        out = None
        if args.jsonl == "-":
            out = sys.stdout
        elif args.jsonl:
            out = stack.enter_context(atomic_output(args.jsonl))
        bar = stack.enter_context(tqdm(total=len(paths), unit="image", disable=None, file=sys.stderr))
        for path, photo, faces in predict_files(predictor, paths, args.batch_size, args.boxes, on_error=report):
            record = {"image": path, "width": int(photo.shape[1]), "height": int(photo.shape[0]), "faces": _face_records(faces)}
            if out is not None:
                out.write(json_line(record))
            else:
                print(f"{path}: {len(faces)} face(s)" + "".join(f"; box {r['box']}" for r in record["faces"]))
            bar.update(1)
        bar.update(len(paths) - bar.n)
    if failed:
        print(f"{PROG}: {failed} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _track_model_path(args) -> str:
    """The given model, else the shipped int8 TFLite student (same NME as the .keras, ~20x less time per frame)."""
    if args.model:
        return args.model
    from mobilefan_tf.default_model import NoDefaultModelError, default_model_path

    try:
        return default_model_path("mobilefan_300w_int8.tflite")
    except NoDefaultModelError:
        return _model_path(args)


def cmd_track(args) -> int:
    from mobilefan_tf.predictor import Predictor
    from mobilefan_tf.tracking import Tracker
    from mobilefan_tf.video import VideoSourceError, track_source

    predictor = Predictor(_load(_track_model_path(args), args.threads), flip_test=not args.no_flip)
    try:
        tracker = Tracker(
            predictor, max_faces=args.max_faces, min_confidence=args.min_confidence, detect_interval=args.detect_interval,
            smoothing=not args.no_smooth, min_cutoff=args.min_cutoff, beta=args.beta, d_cutoff=args.d_cutoff,
            min_speed=args.min_speed,
        )
    except ValueError as err:
        raise CliError("track", str(err).split(": ", 1)[-1]) from None
    try:
        summary = track_source(tracker, args.input, video_out=args.video, jsonl_out=args.jsonl, csv_out=args.csv,
                               fps=args.fps, max_frames=args.max_frames)
    except VideoSourceError as err:
        where, _, problem = str(err).partition(": ")
        raise CliError(where, problem) from None
    print(
        f"{summary['source']}: {summary['frames']} frames at {summary['fps']:g} fps, "
        f"{summary['faces_per_frame']:.2f} faces per frame, {len(summary['ids'])} face id(s), "
        f"{summary['detections']} detector run(s)"
    )
    for what, path in (("video", args.video), ("landmarks", args.jsonl), ("landmarks", args.csv)):
        if path:
            print(f"{what}: {path}")
    return 0


def cmd_demo(args) -> int:
    """Landmarks on a bundled photo (scikit-image's astronaut), offline, with the shipped model."""
    from PIL import Image

    try:
        from skimage import data
    except ImportError:
        raise CliError("demo", "scikit-image is needed for the demo photo (pip install scikit-image)") from None
    os.makedirs(args.out, exist_ok=True)
    photo = os.path.join(args.out, "astronaut.png")
    Image.fromarray(data.astronaut()).save(photo)
    args.images = [photo]
    args.json = os.path.join(args.out, "landmarks.json")
    args.draw = os.path.join(args.out, "landmarks.png")
    args.boxes = None
    code = cmd_predict(args)
    print(f"model: {args.model or 'shipped default (mobilefan_300w_int8.tflite)'}; detector: {args.detector}")
    print(f"photo: {photo}\nlandmarks: {args.json}\ndrawing: {args.draw}")
    return code


def _evaluation_data(args, model):
    """(spec, samples) of ``mobilefan evaluate``: ``--dataset``, else a COCO JSON as DIR, else the model's layout."""
    from mobilefan_tf.data.datasets import is_coco_file, load_dataset
    from mobilefan_tf.specs import model_spec

    dataset, data_dir = args.dataset, args.dir
    if dataset is None and is_coco_file(args.dir):
        dataset, data_dir = args.dir, None
    elif dataset is not None and is_coco_file(dataset) and os.path.samefile(dataset, args.dir):
        data_dir = None
    if dataset is None:
        try:
            dataset = model_spec(model)
        except ValueError as err:
            raise CliError("--dataset", f"the model's layout is unknown ({err}): pass --dataset SPEC_FILE") from None
    try:
        return load_dataset(dataset, data_dir, split=args.split, index_base=args.index_base)
    except (OSError, ValueError) as err:
        where, _, problem = " ".join(str(err).split()).partition(": ")
        raise (CliError(where, problem) if problem else CliError(args.dir, where)) from None


def _subset_plot_path(path: str, subset: str) -> str:
    stem, ext = os.path.splitext(path)
    return path if subset == "all" else f"{stem}_{subset}{ext or '.png'}"


def cmd_evaluate(args) -> int:
    from mobilefan_tf.evaluation import (
        evaluate_model,
        evaluation_subsets,
        format_subset_table,
        plot_ced,
        subset_results,
    )
    from mobilefan_tf.flip_averaging import with_flip_test

    model = with_flip_test(_load(_model_path(args), args.threads), not args.no_flip)
    spec, samples = _evaluation_data(args, model)
    try:
        result = evaluate_model(model, samples, spec=spec, threshold=args.threshold, crop_scale=args.crop_scale,
                                norm=args.norm)
    except (OSError, ValueError) as err:
        where, _, problem = str(err).partition(": ")
        raise (CliError(where, problem) if problem else CliError(args.model or "--model", where)) from None
    subsets = evaluation_subsets(samples, spec)
    result["subsets"] = subset_results(result, subsets)
    norm = result["norm"].replace("_", "-")
    print(
        f"{result['num_images']} images ({spec.name}): NME {100 * result['nme']:.3f}% "
        f"({norm}{', flip test' if result['flip_test'] else ''}), "
        f"FR@{args.threshold:g} {100 * result['failure_rate']:.2f}%, AUC@{args.threshold:g} {result['auc']:.4f}"
    )
    if result["parts"]:
        print("NME by part: " + ", ".join(f"{name} {100 * v:.2f}%" for name, v in result["parts"].items()))
    if len(subsets) > 1:
        print(format_subset_table(result["subsets"]))
    if args.json:
        _write_json(args.json, result)
    if args.plot:
        name = os.path.basename(os.path.normpath(args.model or "default model"))
        nmes = [p["nme"] for p in result["per_image"]]
        for subset, idx in subsets.items():
            path = _subset_plot_path(args.plot, subset)
            plot_ced({name: [nmes[i] for i in idx]}, path, threshold=args.threshold,
                     title=f"{spec.name} {subset} ({len(idx)} faces, {norm} NME)")
            print(f"CED plot ({subset}): {path}")
    return 0


def _calibration_images(folder: str | None, size: int, num: int = 64) -> np.ndarray | None:
    if not folder:
        return None
    from mobilefan_tf.data import crop_face, read_300w
    from mobilefan_tf.predictor import read_image

    samples = read_300w(folder, num_points=None)[:num]  # any layout: only the face boxes matter
    return np.stack(
        [crop_face(read_image(s.image_path), landmarks=s.landmarks, output_size=size)[0] for s in samples]
    ).astype(np.float32)


def cmd_export(args) -> int:
    from mobilefan_tf.export import export_saved_model, export_tflite

    path = _model_path(args)
    model = _load(path)
    if not hasattr(model, "get_config"):
        raise CliError(path, "export needs a Keras model (.keras), not an already exported one")
    if args.format == "saved_model":
        if args.quantize != "none":
            raise CliError(args.out, "--quantize applies to --format tflite only")
        export_saved_model(model, args.out)
    else:
        images = _calibration_images(args.calibration, int(model.input_size))
        export_tflite(model, args.out, quantize=args.quantize, representative_images=images, int8_io=args.int8_io)
    print(f"wrote {args.out}")
    return 0


def cmd_benchmark(args) -> int:
    from mobilefan_tf.latency import format_table, run_benchmark

    rows = run_benchmark(
        presets=args.presets,
        variants=args.variants,
        threads=args.threads,
        runs=args.runs,
        model=args.model,
        dlib_predictor=args.dlib_predictor,
        end_to_end=not args.no_end_to_end,
    )
    print(format_table(rows))
    if args.json:
        _write_json(args.json, rows)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="MobileFAN facial landmarks: demo, predict, track, evaluate, export, benchmark.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        return p

    model_help = "model: .keras file, SavedModel dir or .tflite (default: the shipped model)"
    predict_model_help = "model: .keras file, SavedModel dir or .tflite (default: the shipped int8 TFLite paper student)"
    flip_help = "run the model once per face (twice as fast) instead of averaging it with its mirror image"
    detector_help = (
        "face detector: blazeface (default: MediaPipe BlazeFace, TFLite; short range, + full range unless "
        "it finds a face >= 1/5 of the photo), blazeface_both (both ranges always: group photos), "
        "blazeface_short, blazeface_full, dlib (HOG), haar, or a BlazeFace .tflite"
    )
    p = add("predict", "Find faces in photos (or every photo under folders) and their landmarks.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos and/or folders (searched recursively)")
    p.add_argument("--model", help=predict_model_help)
    p.add_argument("--json", metavar="OUT", help="write {image, faces: [{box, landmarks, scores}]} JSON ('-': stdout)")
    p.add_argument("--draw", metavar="OUT.png", help="save the photo with boxes and landmarks drawn")
    p.add_argument("--boxes", nargs="+", type=_box, metavar="x0,y0,x1,y1", help="face boxes (skip detection)")
    p.add_argument("--threads", type=int, default=1, help="TFLite threads")
    p.add_argument("--no_flip", action="store_true", help=flip_help)
    p.add_argument("--detector", default="blazeface", metavar="NAME", help=detector_help)
    p.add_argument("--max_faces", type=int, metavar="N", help="faces per photo at most, best first (default: all); "
                   "1 with blazeface: the full-range model runs only when the short-range one finds no face")
    p.add_argument("--no_verify", action="store_true", help="blazeface: when it finds no face, do not let the landmark "
                   "model confirm the detector's low-scoring boxes (partly covered faces)")
    p.add_argument("--jsonl", metavar="OUT", help="with a folder: one JSON line per image ('-': stdout)")
    p.add_argument("--batch_size", type=int, default=32, help="with a folder: faces per model call")
    p.set_defaults(func=cmd_predict)

    from mobilefan_tf.tracking import DEFAULT_BETA, DEFAULT_D_CUTOFF, DEFAULT_MIN_CUTOFF, DEFAULT_MIN_SPEED

    p = add("track", "Track faces and their landmarks through a video file, an image-sequence folder or a webcam.")
    p.add_argument("input", metavar="INPUT", help="video file, folder of frames (natural order), or webcam index (0)")
    p.add_argument("--model", help="model (default: the shipped int8 TFLite student)")
    p.add_argument("--video", metavar="OUT.mp4", help="write the annotated video (.mp4, .avi, .mkv, .mov)")
    p.add_argument("--jsonl", metavar="OUT", help="one JSON line per frame: {frame, time, faces: [{id, confidence, detected, box, landmarks}]}")
    p.add_argument("--csv", metavar="OUT", help="one row per face per frame: frame, time, id, confidence, detected, x0, y0, ...")
    p.add_argument("--max_faces", type=int, default=4, help="faces tracked at most")
    p.add_argument("--min_confidence", type=float, default=0.35, help="mean landmark score below which a face is lost")
    p.add_argument("--detect_interval", type=int, default=30, help="frames between detector runs while fewer than --max_faces are tracked")
    p.add_argument("--no_smooth", action="store_true", help="report the raw landmarks (no One-Euro filter)")
    p.add_argument("--min_cutoff", type=float, default=DEFAULT_MIN_CUTOFF, help="One-Euro cutoff (Hz) of a still face: lower, less jitter")
    p.add_argument("--beta", type=float, default=DEFAULT_BETA, help="One-Euro speed coefficient (per face size / s): higher, less lag")
    p.add_argument("--d_cutoff", type=float, default=DEFAULT_D_CUTOFF, help="One-Euro cutoff (Hz) of the speed estimate")
    p.add_argument("--min_speed", type=float, default=DEFAULT_MIN_SPEED, help="speeds below this (face sizes / s) count as still")
    p.add_argument("--fps", type=float, help="frame rate of a folder or webcam (default: the video's, else 30)")
    p.add_argument("--max_frames", type=int, help="stop after this many frames")
    p.add_argument("--threads", type=int, default=1, help="TFLite threads")
    p.add_argument("--no_flip", action="store_true", help=flip_help)
    p.set_defaults(func=cmd_track)

    p = add("demo", "Run the shipped model on a bundled photo, offline: writes JSON and a drawing.")
    p.add_argument("--out", default="mobilefan_demo", help="output folder")
    p.add_argument("--model", help=predict_model_help)
    p.add_argument("--threads", type=int, default=1, help="TFLite threads")
    p.add_argument("--no_flip", action="store_true", help=flip_help)
    p.add_argument("--detector", default="blazeface", metavar="NAME", help=detector_help)
    p.set_defaults(func=cmd_demo)

    p = add("evaluate", "Score a model on annotated faces: a table per dataset subset and a CED plot per subset.")
    p.add_argument("dir", metavar="DATA", help="folder of images + .pts, a WFLW / COFW folder, or a COCO keypoints JSON")
    p.add_argument("--model", help=model_help)
    p.add_argument("--dataset", help="300w, wflw, cofw, a landmark spec file or a COCO keypoints JSON "
                   "(default: the model's layout)")
    p.add_argument("--split", default="all", help="WFLW / COFW: test or train; 300W: all (default), common, "
                   "challenging, full")
    p.add_argument("--index_base", type=int, choices=(0, 1), default=None,
                   help="subtract this from .pts coordinates (default: the folder's mobilefan_dataset.json or README, "
                   "else the dataset's convention: published 300W is 1-based)")
    p.add_argument("--norm", choices=("inter_ocular", "inter_pupil", "bbox_diagonal"),
                   help="NME normaliser (default: the dataset's: COFW inter-pupil, others inter-ocular)")
    p.add_argument("--json", metavar="OUT", help="write num_images, nme, failure_rate, auc, parts, subsets, per_image")
    p.add_argument("--plot", metavar="OUT.png", help="save the CED curve (and OUT_<subset>.png per subset)")
    p.add_argument("--threshold", type=float, default=0.08, help="NME threshold of FR and AUC")
    p.add_argument("--crop_scale", type=float, help="crop side / landmark-box side (default: model's, else 1.25)")
    p.add_argument("--threads", type=int, default=1, help="TFLite threads")
    p.add_argument("--no_flip", action="store_true", help=flip_help)
    p.set_defaults(func=cmd_evaluate)

    p = add("export", "Export a Keras model as a TF Serving SavedModel or a TFLite file.")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--format", choices=("saved_model", "tflite"), required=True)
    p.add_argument("--quantize", choices=("none", "fp16", "int8"), default="none")
    p.add_argument("--int8_io", action="store_true", help="int8 input tensor (with --quantize int8)")
    p.add_argument("--calibration", metavar="DIR", help="300W-style folder of int8 calibration faces")
    p.add_argument("--model", help="Keras model (.keras; default: the shipped model)")
    p.set_defaults(func=cmd_export)

    p = add("benchmark", "Latency per face of every export variant (and dlib, if available).")
    p.add_argument("--presets", nargs="+", default=["mobilefan_lite", "mobilefan"])
    p.add_argument("--variants", nargs="+", default=["keras", "saved_model", "tflite", "tflite_fp16", "tflite_int8"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--runs", type=int, default=50, help="timed runs per row")
    p.add_argument("--model", help="benchmark this .keras model instead of untrained presets")
    p.add_argument("--dlib_predictor", metavar="DAT", help="dlib shape_predictor_68_face_landmarks.dat")
    p.add_argument("--no_end_to_end", action="store_true", help="skip the detection + landmarks rows")
    p.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    p.set_defaults(func=cmd_benchmark)
    return parser


def _error(err: BaseException, debug: bool, cause: BaseException | None = None) -> None:
    if debug:
        import traceback

        traceback.print_exception(cause or err)
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _import_quietly() -> None:
    """Imports TensorFlow and LiteRT with C-level stderr (fd 2) muted.

    Their start-up log lines ignore TF_CPP_MIN_LOG_LEVEL; see `predictor.quiet_stderr`.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured stderr)
        saved = None
    if saved is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    try:
        import mobilefan_tf.predictor  # noqa: F401 - imports keras and TensorFlow

        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError:
            pass
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 failure, 2 usage error)."""
    args = build_parser().parse_args(argv)
    if not args.debug:
        _import_quietly()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except CliError as err:
        _error(err, args.debug)
    except (OSError, ValueError, ImportError) as err:
        where = getattr(err, "filename", None) or args.command
        _error(CliError(str(where), str(err)), args.debug)
    except Exception as err:  # noqa: BLE001 - never a bare traceback without --debug
        _error(CliError(args.command, f"{type(err).__name__}: {err}"), args.debug)
    return 1


if __name__ == "__main__":
    sys.exit(main())
