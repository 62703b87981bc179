"""Frames in (video file, image-sequence folder, webcam) and files out, written whole or not at all.

Every failure to read is a `VideoSourceError`: one line naming the source
("clip.mp4: frame 12 of 40 failed to decode"). Outputs are written to a
temporary file beside the target and renamed onto it only when the run
finishes, so a failed run leaves no half-written video or landmark file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

import numpy as np

from mobilefan_tf.predictor import quiet_stderr, read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm")
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}


class VideoSourceError(ValueError):
    """A source that cannot be opened or a frame that cannot be read (one line, naming the source)."""


def natural_key(path: str) -> list:
    """Sort key putting frame_2 before frame_10."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", path)]


def list_images(folder: str, recursive: bool = False) -> list[str]:
    """Image files (by extension) in `folder`, in natural order; with `recursive`, of every subfolder too."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort(key=natural_key)
        found += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not recursive:
            break
    return sorted(found, key=natural_key)


class FrameSource:
    """The frames of a video file, an image-sequence folder or a webcam, as uint8 RGB [H, W, 3].

    Args:
        source: A video path, a folder of images (natural order), or a webcam
            index ("0", or an int).
        fps: Frame rate for folders and webcams that report none (default 30).

    Attributes:
        name: The source as the user gave it (used in error messages).
        fps: Frames per second.
        frame_count: Number of frames when known (files, folders), else None.

    Raises:
        VideoSourceError: when the source cannot be opened.
    """

    def __init__(self, source, fps: float | None = None):
        import cv2

        self.name = str(source)
        self._cap, self._files = None, None
        is_index = isinstance(source, int) or (str(source).isdigit() and not os.path.exists(str(source)))
        if os.path.isdir(self.name):
            self._files = list_images(self.name)
            if not self._files:
                raise VideoSourceError(f"{self.name}: folder has no images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...)")
            self.fps, self.frame_count = float(fps or 30.0), len(self._files)
            return
        if is_index:
            with quiet_stderr():  # OpenCV logs its V4L2 / FFmpeg probing on fd 2
                self._cap = cv2.VideoCapture(int(source))
            if not self._cap.isOpened():
                raise VideoSourceError(f"webcam {int(source)}: cannot be opened (absent, busy or not permitted)")
            self.name = f"webcam {int(source)}"
            self.frame_count = None
        else:
            if not os.path.isfile(self.name):
                raise VideoSourceError(f"{self.name}: no such video file, folder or webcam index")
            with quiet_stderr():
                self._cap = cv2.VideoCapture(self.name)
            if not self._cap.isOpened():
                raise VideoSourceError(f"{self.name}: cannot be opened as a video (unknown format or damaged file)")
            count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
            self.frame_count = count if count > 0 else None
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps or (reported if reported and 0 < reported < 1000 else 30.0))

    def __iter__(self):
        if self._files is not None:
            shape = None
            for i, path in enumerate(self._files):
                try:
                    frame = read_image(path)
                except (OSError, ValueError) as err:
                    raise VideoSourceError(f"{path}: frame {i} of {self.name} failed to decode ({err})") from None
                if shape is not None and frame.shape != shape:
                    raise VideoSourceError(f"{path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, the first was {shape[1]}x{shape[0]}")
                shape = frame.shape
                yield frame
            return
        import cv2

        i = 0
        while True:
            with quiet_stderr():  # FFmpeg prints decoder errors itself; we report one line
                ok, frame = self._cap.read()
            if not ok:
                # A read that fails before the container's frame count is a broken frame, not the end.
                if self.frame_count is not None and i < self.frame_count:
                    raise VideoSourceError(f"{self.name}: frame {i} of {self.frame_count} failed to decode")
                return
            i += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _temp_beside(path: str, suffix: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"{path}: output folder {folder} does not exist")
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part" + suffix, dir=folder)
    os.close(fd)
    return temp


@contextlib.contextmanager
def atomic_output(path: str, mode: str = "w"):
    """Opens a temporary file beside `path`; renamed onto `path` only if the block succeeds."""
    temp = _temp_beside(path, os.path.splitext(path)[1])
    try:
        with open(temp, mode, newline="" if "b" not in mode else None) as f:
            yield f
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


class AtomicVideoWriter:
    """`cv2.VideoWriter` into a temporary file, renamed onto `path` by `commit()`.

    The codec follows the extension (.mp4/.mov: mp4v, .avi/.mkv: MJPG). The
    writer opens on the first frame (its size fixes the video's).

    Args:
        path: The output video.
        fps: Frames per second.

    Raises:
        ValueError: one line, for an unsupported extension.
    """

    def __init__(self, path: str, fps: float):
        ext = os.path.splitext(path)[1].lower()
        if ext not in VIDEO_CODECS:
            raise ValueError(f"{path}: unsupported video extension (want {', '.join(VIDEO_CODECS)})")
        self.path, self.fps, self._ext = path, float(fps), ext
        self._temp = _temp_beside(path, ext)
        self._writer = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Appends one uint8 RGB [H, W, 3] frame."""
        import cv2

        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(self._temp, cv2.VideoWriter_fourcc(*VIDEO_CODECS[self._ext]), self.fps, (w, h))
            if not self._writer.isOpened():
                self.abort()
                raise OSError(f"{self.path}: cannot write a {self._ext} video here")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def commit(self) -> None:
        """Finishes the video and moves it onto `path`."""
        if self._writer is not None:
            self._writer.release()
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        """Drops the partial video."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if os.path.exists(self._temp):
            os.remove(self._temp)


def draw_tracked(frame: np.ndarray, faces: list[dict]) -> np.ndarray:
    """A copy of `frame` with each tracked face's landmarks (red), box (green) and id drawn."""
    import cv2

    canvas = np.ascontiguousarray(frame.copy())
    size = max(frame.shape[:2])
    radius, thick = max(1, round(size / 400)), max(1, round(size / 500))
    for face in faces:
        x0, y0, x1, y1 = (round(float(v)) for v in face["box"])
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 255, 0), thick)
        for x, y in face["landmarks"]:
            cv2.circle(canvas, (round(float(x)), round(float(y))), radius, (255, 0, 0), -1)
        label = f"{face['id']} {face['confidence']:.2f}"
        cv2.putText(canvas, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, max(0.4, size / 1500), (0, 255, 0), thick)
    return canvas


def face_record(face: dict) -> dict:
    """JSON-ready dict of one tracked face (coordinates rounded to 0.01 px)."""
    return {
        "id": int(face["id"]),
        "confidence": round(float(face["confidence"]), 4),
        "detected": bool(face["detected"]),
        "box": [round(float(v), 2) for v in face["box"]],
        "landmarks": np.round(np.asarray(face["landmarks"], np.float64), 2).tolist(),
    }


def track_source(
    tracker,
    source,
    video_out: str | None = None,
    jsonl_out: str | None = None,
    csv_out: str | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    progress: bool | None = None,
) -> dict:
    """Runs a `Tracker` over a video, folder or webcam and writes the outputs whole.

    Args:
        tracker: A `tracking.Tracker` (reset first).
        source: What `FrameSource` takes.
        video_out: Annotated video path (.mp4, .avi, .mkv, .mov), or None.
        jsonl_out: One JSON object per frame, ``{"frame", "time", "faces":
            [{"id", "confidence", "detected", "box", "landmarks"}]}``.
        csv_out: One row per face per frame: frame, time, id, confidence,
            detected, x0, y0, ..., x{K-1}, y{K-1}.
        fps: Frame rate for sources that report none (folders, webcams).
        max_frames: Stop after this many frames.
        progress: Show a tqdm bar on stderr (None: only on a terminal).

    Returns:
        ``{"source", "frames", "fps", "faces_per_frame", "ids", "detections"}``.

    Raises:
        VideoSourceError: the source cannot be opened or a frame cannot be
            decoded; nothing is written then (a webcam stopped by Ctrl-C
            keeps the frames so far).
    """
    import csv

    from tqdm import tqdm

    tracker.reset()
    with contextlib.ExitStack() as stack:
        frames = stack.enter_context(FrameSource(source, fps=fps))
        writer = AtomicVideoWriter(video_out, frames.fps) if video_out else None
        if writer:
            stack.callback(writer.abort)  # no-op after commit
        jsonl = stack.enter_context(atomic_output(jsonl_out)) if jsonl_out else None
        table = csv.writer(stack.enter_context(atomic_output(csv_out))) if csv_out else None
        if table:
            k = int(tracker.predictor.model.num_keypoints)
            table.writerow(["frame", "time", "id", "confidence", "detected"] + [f"{a}{i}" for i in range(k) for a in "xy"])
        total = frames.frame_count if max_frames is None else min(max_frames, frames.frame_count or max_frames)
        bar = stack.enter_context(tqdm(total=total, unit="frame", desc=frames.name, disable=None if progress is None else not progress))
        count, faces_seen, ids = 0, 0, set()
        try:
            for frame in frames:
                if max_frames is not None and count >= max_frames:
                    break
                t = count / frames.fps
                faces = tracker.update(frame, t)
                records = [face_record(f) for f in faces]
                faces_seen += len(faces)
                ids.update(r["id"] for r in records)
                if jsonl:
                    jsonl.write(json_line({"frame": count, "time": round(t, 4), "faces": records}))
                if table:
                    for r in records:
                        table.writerow([count, round(t, 4), r["id"], r["confidence"], int(r["detected"])] + np.ravel(r["landmarks"]).tolist())
                if writer:
                    writer.write(draw_tracked(frame, faces))
                count += 1
                bar.update(1)
        except KeyboardInterrupt:
            if frames.frame_count is not None:  # a file: an interrupted run is not a result
                raise
        if count == 0:
            raise VideoSourceError(f"{frames.name}: no frame could be read")
        if writer:
            writer.commit()
    return {
        "source": frames.name,
        "frames": count,
        "fps": frames.fps,
        "faces_per_frame": faces_seen / count,
        "ids": sorted(ids),
        "detections": tracker.detections,
    }


def json_line(record: dict) -> str:
    import json

    return json.dumps(record, separators=(",", ":")) + "\n"
