"""Landmarks on photos: model loading (Keras, SavedModel, TFLite) and `Predictor`.

Every runner here has the Keras models' API: `input_size`, `num_keypoints`,
`check_images(images)` and `predict_landmarks(images) -> (landmarks [B, K, 2]
in input pixels, scores [B, K])` for face crops [B, S, S, 3] RGB 0..255.

`Predictor` goes from a whole photo to landmarks in that photo's pixels:
detect faces (or take boxes), crop each like training, run the model, map
the landmarks back through the crop's affine transform. Its default model
is the shipped int8 TFLite paper student (same validation NME as the Keras
file, 5x faster on one CPU thread); a Keras model given to it runs through
one compiled `tf.function` (`CompiledKerasRunner`) instead of `Model.predict`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np

from mobilefan_tf.detector import FaceDetector, default_detector, make_detector
from mobilefan_tf.export import DEFAULT_CROP_SCALE, METADATA_FILE
from mobilefan_tf.flip_averaging import with_flip_test

MAX_SIDE = 4096  # photos with a longer side are downscaled before detection
MAX_PIXELS = 100_000_000  # larger photos are refused


@contextlib.contextmanager
def quiet_stderr():
    """Mutes C-level stderr (fd 2): TF and LiteRT log start-up lines there that no env var silences."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _RunnerBase:
    """Shared `check_images` of the non-Keras runners."""

    input_size: int
    name: str

    def check_images(self, images) -> np.ndarray:
        """Validates a batch [B, S, S, 3] (or one [S, S, 3]) RGB 0..255 -> float32."""
        from mobilefan_tf.models.base import check_image_batch

        return check_image_batch(images, self.input_size, self.name)


class TFLiteModel(_RunnerBase):
    """Runs a `.tflite` from `export_tflite` (batch 1) with ai-edge-litert.

    Args:
        path: The flatbuffer.
        num_threads: CPU threads of the interpreter (XNNPACK).
    """

    def __init__(self, path: str, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        self.name = os.path.basename(path)
        with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        (inp,) = self.interpreter.get_input_details()
        self._input = inp
        shape = list(inp["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or shape[3] != 3:
            raise ValueError(f"{path}: not a landmark model (input shape {shape}, want [1, S, S, 3])")
        self.input_size = int(shape[1])
        self._landmarks = self._scores = None
        for out in self.interpreter.get_output_details():
            if len(out["shape"]) == 3 and out["shape"][-1] == 2:
                self._landmarks = out
            elif len(out["shape"]) == 2:
                self._scores = out
        if self._landmarks is None or self._scores is None:
            raise ValueError(f"{path}: outputs are not landmarks [1, K, 2] and scores [1, K]")
        self.num_keypoints = int(self._landmarks["shape"][1])
        self.metadata = _read_json(path + ".json")
        self.heatmap_size = self.metadata.get("heatmap_size", self.input_size // 4)
        self.crop_scale = float(self.metadata.get("crop_scale", DEFAULT_CROP_SCALE))

    def _quantize_input(self, image: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return image
        scale, zero = self._input["quantization"]
        q = np.round(image / scale + zero)
        info = np.iinfo(dtype)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _output(self, detail) -> np.ndarray:
        out = self.interpreter.get_tensor(detail["index"])
        if out.dtype != np.float32:
            scale, zero = detail["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out

    def predict_landmarks(self, images, batch_size: int = 1, method: str = "dark"):
        """Landmarks [B, K, 2] (input pixels) and scores [B, K]; runs one face at a time."""
        del batch_size, method  # fixed batch 1; decoding is baked into the graph
        arr = self.check_images(images)
        landmarks, scores = [], []
        for image in arr:
            self.interpreter.set_tensor(self._input["index"], self._quantize_input(image[None]))
            self.interpreter.invoke()
            landmarks.append(self._output(self._landmarks)[0])
            scores.append(self._output(self._scores)[0])
        return np.stack(landmarks), np.stack(scores)


class SavedModelRunner(_RunnerBase):
    """Runs the `serving_default` signature of a SavedModel from `export_saved_model`.

    Args:
        path: The SavedModel directory.
        loaded: Optionally, the already loaded SavedModel (`tf.saved_model.load(path)`).
    """

    def __init__(self, path: str, loaded=None):
        import tensorflow as tf

        self.path = path
        self.name = os.path.basename(os.path.normpath(path))
        loaded = loaded if loaded is not None else tf.saved_model.load(path)
        if "serving_default" not in loaded.signatures:
            raise ValueError(f"{path}: SavedModel has no serving_default signature")
        self._loaded = loaded  # keeps the variables alive
        self.signature = loaded.signatures["serving_default"]
        spec = list(self.signature.structured_input_signature[1].values())[0]
        outputs = self.signature.structured_outputs
        if "landmarks" not in outputs or spec.shape.rank != 4:
            raise ValueError(f"{path}: serving_default does not map images to landmarks")
        self._input_name = spec.name
        self.input_size = int(spec.shape[1])
        self.num_keypoints = int(outputs["landmarks"].shape[1])
        self.metadata = _read_json(os.path.join(path, "assets.extra", METADATA_FILE))
        self.heatmap_size = self.metadata.get("heatmap_size", self.input_size // 4)
        self.crop_scale = float(self.metadata.get("crop_scale", DEFAULT_CROP_SCALE))

    def predict_landmarks(self, images, batch_size: int = 16, method: str = "dark"):
        """Landmarks [B, K, 2] (input pixels) and scores [B, K]."""
        import tensorflow as tf

        del method
        arr = self.check_images(images)
        landmarks, scores = [], []
        for i in range(0, len(arr), batch_size):
            out = self.signature(**{self._input_name: tf.constant(arr[i : i + batch_size])})
            landmarks.append(out["landmarks"].numpy())
            scores.append(out["scores"].numpy())
        return np.concatenate(landmarks), np.concatenate(scores)


class CompiledKerasRunner:
    """A Keras landmark model behind one traced `tf.function` (model + heatmap decoding).

    `keras.Model.predict` builds a data pipeline on every call (tens of ms
    per photo); this traces the forward pass and DARK decoding once for any
    batch size and then only runs the graph. Other attributes are the model's.

    Args:
        model: A mobilefan_tf Keras landmark model.
    """

    def __init__(self, model):
        import tensorflow as tf

        from mobilefan_tf.heatmaps import decode_to_input

        self.model = model
        size = int(model.input_size)

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], autograph=False)
        def run(images):
            out = model(images, training=False)
            return decode_to_input(out[-1] if isinstance(out, (list, tuple)) else out, size)

        self._run = run

    def __getattr__(self, name):
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def predict_landmarks(self, images, batch_size: int = 16, method: str = "dark"):
        """Landmarks [B, K, 2] (input pixels) and scores [B, K] of crops [B, S, S, 3] RGB 0..255."""
        if method != "dark":
            return self.model.predict_landmarks(images, batch_size=batch_size, method=method)
        arr = self.model.check_images(images)
        out = [self._run(arr[i : i + batch_size]) for i in range(0, len(arr), batch_size)]
        return np.concatenate([lm.numpy() for lm, _ in out]), np.concatenate([sc.numpy() for _, sc in out])


def default_predictor_model(num_threads: int = 1):
    """The model `Predictor()` uses: the shipped int8 TFLite paper student, else the Keras default.

    Raises:
        NoDefaultModelError: one line, when no model is shipped.
    """
    from mobilefan_tf.default_model import ASSETS_DIR, default_model_path

    path = os.path.join(ASSETS_DIR, "mobilefan_300w_int8.tflite")
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        path = None
    return load_landmark_model(path if path and os.path.isfile(path) else default_model_path(), num_threads)


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def load_landmark_model(path: str, num_threads: int = 1):
    """Loads a `.keras` file, a SavedModel directory or a `.tflite` file.

    Raises:
        FileNotFoundError / ValueError with a one-line message naming `path`.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"model not found: {path}")
    try:
        if os.path.isdir(path):
            if not os.path.isfile(os.path.join(path, "saved_model.pb")):
                raise ValueError("directory is not a SavedModel (no saved_model.pb)")
            return SavedModelRunner(path)
        if path.endswith(".tflite"):
            return TFLiteModel(path, num_threads=num_threads)
        if path.endswith(".keras"):
            import keras

            import mobilefan_tf.models  # noqa: F401 - registers the model classes

            model = keras.saving.load_model(path, compile=False)
            if not hasattr(model, "predict_landmarks"):
                raise ValueError("not a mobilefan_tf landmark model")
            return model
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"cannot load model {path}: {err}") from None
    except Exception as err:  # noqa: BLE001 - loaders raise many types; keep one line
        raise ValueError(f"cannot load model {path}: {type(err).__name__}: {str(err).splitlines()[0]}") from None
    raise ValueError(f"cannot load model {path}: unknown format (want .keras, .tflite or a SavedModel dir)")


def to_rgb_uint8(image) -> np.ndarray:
    """Converts gray [H, W] / [H, W, 1], RGBA, 16-bit or float 0..255 images to uint8 RGB [H, W, 3]."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"not an image: array of shape {list(arr.shape)}")
    arr = arr[..., :3]
    if arr.dtype == np.uint16:
        arr = arr / 257.0
    elif arr.dtype == np.bool_:
        arr = arr * 255.0
    return np.clip(np.round(arr.astype(np.float64)), 0, 255).astype(np.uint8) if arr.dtype != np.uint8 else arr


def read_image(path: str) -> np.ndarray:
    """Reads any PIL-readable photo as uint8 RGB [H, W, 3] (EXIF rotation applied).

    Raises:
        ValueError: one line, for non-images, truncated files and huge images.
    """
    from PIL import Image, ImageOps

    if not os.path.isfile(path):
        raise FileNotFoundError("no such file")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ValueError(f"image too large ({im.width}x{im.height}, limit {MAX_PIXELS} pixels)")
            im = ImageOps.exif_transpose(im)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.float64)
                arr = arr / 257.0 if arr.max() > 255 else arr
                return to_rgb_uint8(arr)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError:
        raise ValueError(f"image too large (limit {MAX_PIXELS} pixels)") from None
    except Image.UnidentifiedImageError:
        raise ValueError("not an image (unrecognised format)") from None
    except OSError as err:
        raise ValueError(f"unreadable image ({err})") from None


class Predictor:
    """Photo -> faces -> landmarks in the photo's pixels.

    Args:
        model: A path (``.keras``, SavedModel dir, ``.tflite``), a Keras
            landmark model, a runner (`TFLiteModel`, `SavedModelRunner`) or
            a `tf.saved_model.load` result of `export_saved_model`.
            None loads `default_predictor_model()` (the shipped int8 TFLite).
            Keras models run through `CompiledKerasRunner`.
        detector: A `FaceDetector` or a `make_detector` name (``"blazeface"``,
            ``"dlib"``, ...); None uses `default_detector()` (BlazeFace
            `MultiRangeBlazeFace`, created on the first photo without boxes).
        crop_scale: Side of the crop / side of the face box, as in training
            (`data.crop_face`'s `scale`); defaults to the model's metadata, else 1.25.
        num_threads: TFLite threads (landmark model and detector).
        flip_test: Average each face's landmarks with those of its mirror
            image (`flip_test.FlipTestModel`): more accurate, twice the
            model time. False runs the model once, as the exported graphs do.
        max_faces: Faces per photo at most, best detection first (None: every
            face found). A detector made here (a name, or the default) is
            told, so that it can stop early: the default BlazeFace with
            ``max_faces=1`` runs its full-range model only when its
            short-range one finds no face (one face per photo at the
            short-range model's speed). Given ``boxes`` are never cut.
        verify: When the detector finds no face, let the landmark model
            confirm its near-misses (`FaceDetector.detect_verified`): the
            default BlazeFace then keeps the boxes it scored 0.5-0.7 (short
            range) or 0.4-0.6 (full range) whose mean heatmap peak, in one
            model pass, is at least 0.35 (partly covered faces). Photos with
            a detected face are not affected. False: the detector's answer alone.
    """

    def __init__(
        self,
        model=None,
        detector: FaceDetector | str | None = None,
        crop_scale: float | None = None,
        num_threads: int = 1,
        flip_test: bool = True,
        max_faces: int | None = None,
        verify: bool = True,
    ):
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces: want >= 1 or None (got {max_faces})")
        if model is None:
            model = default_predictor_model(num_threads)
        if isinstance(model, (str, os.PathLike)):
            model = load_landmark_model(os.fspath(model), num_threads=num_threads)
        elif not hasattr(model, "predict_landmarks") and hasattr(model, "signatures"):
            model = SavedModelRunner(getattr(model, "path", "saved_model"), loaded=model)  # tf.saved_model.load result
        if _is_keras(model):
            model = CompiledKerasRunner(model)
        self._one_pass = model  # the verifier's: one pass whatever flip_test says
        self.model = with_flip_test(model, flip_test)
        self.verify = verify
        self.num_threads = num_threads
        self.max_faces = max_faces
        self._detector = make_detector(detector, num_threads, max_faces) if isinstance(detector, str) else detector
        self.crop_scale = float(crop_scale or getattr(model, "crop_scale", None) or DEFAULT_CROP_SCALE)

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = default_detector(self.max_faces)
        return self._detector

    def predict(self, image, boxes=None) -> list[dict]:
        """Finds the landmarks of every face in a photo.

        Args:
            image: [H, W, 3] RGB (or gray, RGBA, 16-bit; converted) of any size.
            boxes: Optional [N, 4] face boxes (x0, y0, x1, y1) in photo pixels;
                detected when None. Detector boxes are converted to
                landmark-like boxes by the detector's `to_landmark_box`.

        Returns:
            One dict per face, best detection first: ``box`` [4] (the face box
            used), ``landmarks`` [K, 2] float32 (x, y) in photo pixels,
            ``scores`` [K] (heatmap peaks) and ``detector_score`` (the
            detector's confidence, e.g. BlazeFace's in (0, 1); None for given
            boxes, NaN for a detector without scores).
        """
        photo = to_rgb_uint8(image)
        small, factor = _working_copy(photo)
        box_factor = np.tile(factor, 2)
        detector_scores = None
        if boxes is None:
            boxes, detector_scores = self._detect(small, factor)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if not len(boxes):
            return []
        faces = self.predict_boxes(photo if small is photo else small, (boxes + 0.5) * box_factor - 0.5)
        for i, (face, box) in enumerate(zip(faces, boxes, strict=True)):
            face["box"] = box.astype(np.float32)
            face["landmarks"] = ((face["landmarks"] + 0.5) / factor - 0.5).astype(np.float32)
            face["detector_score"] = None if detector_scores is None else float(detector_scores[i])
        return faces

    def detect(self, image) -> tuple[np.ndarray, np.ndarray]:
        """The landmark boxes `predict` would use, without running the model.

        Args:
            image: [H, W, 3] RGB (or anything `predict` takes).

        Returns:
            boxes: [N, 4] float64 landmark-like boxes (x0, y0, x1, y1) in photo
                pixels, best detection first, at most `max_faces`. Photos longer
                than `MAX_SIDE` are searched on a downscaled copy.
            scores: [N] the detector's confidences (NaN for a detector without scores).
        """
        photo = to_rgb_uint8(image)
        return self._detect(*_working_copy(photo))

    def _detect(self, small: np.ndarray, factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detection on the working copy `small`; boxes mapped back to the photo by per-axis `factor`."""
        found, scores = self.detector.detect_verified(small, self._confidence if self.verify else None)
        found, scores = found[: self.max_faces], scores[: self.max_faces]  # best first
        boxes = np.asarray(self.detector.to_landmark_box(found), np.float64).reshape(-1, 4)
        return (boxes + 0.5) / np.tile(factor, 2) - 0.5, np.asarray(scores, np.float64).reshape(-1)

    def _confidence(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Mean heatmap peak [N] of the faces in landmark boxes [N, 4] (one model pass): the verifier."""
        from mobilefan_tf.data import crop_matrix

        size = self.model.input_size
        crops = self._crops(image, [crop_matrix(box, size, self.crop_scale) for box in boxes])
        return self._one_pass.predict_landmarks(crops)[1].mean(axis=1)

    def _crops(self, image: np.ndarray, matrices) -> np.ndarray:
        """float32 [N, S, S, 3] model inputs: one bilinear `cv2.warpAffine` per matrix, black outside."""
        import cv2

        size = self.model.input_size
        photo = np.ascontiguousarray(image)
        return np.stack(
            [
                cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                for m in matrices
            ]
        ).astype(np.float32)

    def predict_boxes(self, image, boxes) -> list[dict]:
        """Landmarks for given face boxes, all faces in one batched model call.

        Args:
            image: uint8 RGB [H, W, 3] photo (no conversion, no downscaling).
            boxes: [N, 4] landmark-like face boxes (x0, y0, x1, y1), photo pixels.

        Returns:
            As `predict_matrices`, plus ``box``.
        """
        from mobilefan_tf.data import crop_matrix

        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        size = self.model.input_size
        matrices = [crop_matrix(box, size, self.crop_scale) for box in boxes]
        faces = self.predict_matrices(image, matrices)
        for face, box in zip(faces, boxes, strict=True):
            face["box"] = box.astype(np.float32)
        return faces

    def predict_matrices(self, image, matrices) -> list[dict]:
        """Landmarks for faces given as crop transforms (e.g. a tracker's rotated crops).

        Only the S x S crops are warped out of the photo (one bilinear
        `cv2.warpAffine` each, black outside), then the model runs once on
        the batch of crops.

        Args:
            image: uint8 RGB [H, W, 3] photo.
            matrices: [N, 2, 3] affine maps, photo pixel centres -> crop pixel
                centres of the model's S x S input (see `data.crop_matrix`).

        Returns:
            One dict per matrix: ``landmarks`` [K, 2] float32 in photo pixels,
            ``scores`` [K] heatmap peaks (a per-face confidence: their mean
            drops when the crop holds no face), ``matrix`` [2, 3].
        """
        from mobilefan_tf.data import apply_affine, invert_affine

        matrices = np.asarray(matrices, np.float64).reshape(-1, 2, 3)
        if not len(matrices):
            return []
        landmarks, scores = self.model.predict_landmarks(self._crops(image, matrices))
        return [
            {"landmarks": np.asarray(apply_affine(invert_affine(m), lm), np.float32), "scores": sc, "matrix": m.astype(np.float32)}
            for m, lm, sc in zip(matrices, landmarks, scores, strict=True)
        ]


def _is_keras(model) -> bool:
    try:
        import keras
    except ImportError:
        return False
    return isinstance(model, keras.Model) and hasattr(model, "predict_landmarks")


def _working_copy(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo, downscaled when longer than `MAX_SIDE`, and its per-axis scale [2] (x, y).

    Pixel centres map from the photo to the copy as (x + 0.5) * factor - 0.5.
    """
    h, w = photo.shape[:2]
    small = photo if max(h, w) <= MAX_SIDE else _resize(photo, MAX_SIDE / max(h, w))
    return small, np.array([small.shape[1] / w, small.shape[0] / h])


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
