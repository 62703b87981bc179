"""Train on a GPU machine that has JAX but no TensorFlow (Keras 3, JAX backend).

Why: the GPU machines this project is sometimes lent carry JAX + CUDA and no
TensorFlow, and nothing can be installed there beyond a few small wheels.
Our models are plain Keras 3 layers, so they train on the JAX backend as
they are; what changes is the input pipeline. The tf.data one is replaced by
the same augmentation (`mobilefan_tf.data.AugmentConfig`: one affine for
crop + rotation + scale + shift + flip, then occlusion, colour jitter, blur)
written in jax.numpy, with the whole dataset resident on the accelerator, so
the host never feeds pixels. Distillation uses the same loss functions as
`distillation.Distiller` (they are Keras ops). The result is a Keras
``.weights.h5`` that ``build_model(preset).load_weights`` reads under
TensorFlow (tested), then `experiments.evaluate` / `experiments.export`.

Two steps:

  # Here (any machine with the data): JPEG bytes + landmarks + the split.
  python -m experiments.jax_train --pack .devdata/300w.npz
  # There (KERAS_BACKEND=jax is set by this script):
  python -m experiments.jax_train --data .devdata/300w.npz --preset mobilefan \
      --epochs 300 --time_budget 480 --workdir /tmp/runs/student

The validation faces are the same as `experiments.script_setup.training_data`'s
(every 10th by sorted name); they are never trained on. Long runs here are
bounded by ``--time_budget``: when the measured epoch time says the planned
epochs will not fit, the plan (and the cosine schedule's end) is moved
earlier, and the log says so. ``--noshrink`` keeps the epoch count fixed and
stops at the budget instead (ablation rows must train the same epochs).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # as a script: JAX unless told otherwise (never for importers: their subprocesses inherit it)
    os.environ.setdefault("KERAS_BACKEND", "jax")

import csv  # noqa: E402 - KERAS_BACKEND must be set before keras loads (keras is imported lazily below)
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from mobilefan_tf.data.config import AugmentConfig  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("pack", None, "Write the packed dataset to this .npz and exit (needs --data_dir and cv2).")
flags.DEFINE_string("data_dir", "../shared/data/300w", "300W folder (0-based .pts), for --pack.")
flags.DEFINE_string("data", None, "Packed dataset (.npz from --pack).")
flags.DEFINE_string("preset", "mobilefan", "Model preset to train.")
flags.DEFINE_string("workdir", "runs/jax_train", "Log, weights and summary go here.")
flags.DEFINE_integer("epochs", 100, "Planned epochs.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", 2e-3, "Peak learning rate (Adam).")
flags.DEFINE_float("warmup_epochs", 3.0, "Linear warm-up epochs.")
flags.DEFINE_float("min_lr_ratio", 0.01, "Cosine floor, as a fraction of the peak.")
flags.DEFINE_float("sigma", 1.0, "Heatmap Gaussian sigma (heatmap pixels).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, order and augmentation.")
flags.DEFINE_float("time_budget", 0.0, "Seconds for the whole run (0: no limit).")
flags.DEFINE_bool("shrink", True, "Shorten the plan to fit --time_budget (else: stop at the budget).")
flags.DEFINE_integer("eval_every", 1, "Validate every this many epochs (and at the end).")
flags.DEFINE_bool("augment", True, "Random augmentation of training faces.")
flags.DEFINE_string("teacher", None, "Teacher .weights.h5 (for --fa_weight / --fs_weight).")
flags.DEFINE_string("teacher_preset", "hourglass", "Preset of --teacher.")
flags.DEFINE_float("fa_weight", 0.0, "Feature-aligned (FAD) loss weight.")
flags.DEFINE_float("fs_weight", 0.0, "Feature-similarity (FSD) loss weight.")
flags.DEFINE_bool("fa_normalize", True, "Relative FAD (see distillation.losses.feature_aligned_loss).")
flags.DEFINE_integer("fs_pool_size", None, "Average-pool features by this factor before FSD.")
flags.DEFINE_list("stages", ["feat1", "feat2", "feat3"], "Decoder features to distil.")
flags.DEFINE_string("to_keras", None, "Convert --weights (a .weights.h5 of --preset) to this .keras file and exit.")
flags.DEFINE_string("weights", None, "A .weights.h5 written by this trainer, for --to_keras.")
flags.DEFINE_float("loss_scale", 1.0, "Multiply the loss for the gradient (Adam is nearly scale-free; "
                   "lifts tiny heatmap-MSE gradients away from float32 underflow).")
flags.DEFINE_integer("limit", 0, "Use only this many training faces (0: all); for smoke tests.")

SPEC_EYES = (36, 45)  # 300W outer eye corners (inter-ocular NME)


# ----------------------------------------------------------------- packing
def pack_dataset(data_dir: str, out_path: str, every: int = 10) -> dict:
    """Packs a 300W folder into one .npz: JPEG bytes, landmarks, names, split.

    Args:
        data_dir: Folder of ``.jpg`` + 0-based ``.pts`` (searched recursively).
        out_path: Destination ``.npz``.
        every: Every `every`-th face by sorted name is validation, as in
            `mobilefan_tf.data.split_train_val`.

    Returns:
        Counts: ``{"train": n, "val": m, "bytes": size}``.
    """
    from pathlib import Path

    from mobilefan_tf.data import read_300w, split_train_val

    samples = read_300w(data_dir, index_base=0)
    _, val = split_train_val(samples, every=every)
    val_names = {s.name for s in val}
    blobs = [Path(s.image_path).read_bytes() for s in samples]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    np.savez(
        out_path,
        jpeg=np.frombuffer(b"".join(blobs), np.uint8),
        offsets=offsets,
        landmarks=np.stack([s.landmarks for s in samples]).astype(np.float32),
        names=np.array([s.name for s in samples]),
        is_val=np.array([s.name in val_names for s in samples]),
    )
    return {"train": len(samples) - len(val), "val": len(val), "bytes": os.path.getsize(out_path)}


def load_packed(path: str) -> dict:
    """Decodes a packed .npz: uint8 images [N, H, W, 3] (RGB), landmarks [N, K, 2], is_val, names."""
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Packed dataset not found: {path} (make it with --pack)")
    try:
        z = np.load(path)
        jpeg, off = z["jpeg"], z["offsets"]
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise ValueError(f"{path}: not a packed dataset from --pack ({type(err).__name__})") from None
    images = []
    for i in range(len(off) - 1):
        img = cv2.imdecode(jpeg[off[i]:off[i + 1]], cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{path}: image {i} ({z['names'][i]}) does not decode")
        images.append(img[:, :, ::-1])
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"{path}: images must share one size to live on the device, got {sorted(shapes)[:3]}")
    return {"images": np.stack(images), "landmarks": z["landmarks"], "is_val": z["is_val"], "names": z["names"]}


# ------------------------------------------------------- augmentation (jnp)
def crop_matrix(landmarks, size: int, scale: float = 1.25):
    """[3, 3] affine: source pixel centres -> an S x S crop of the landmark box (as transforms.crop_matrix)."""
    import jax.numpy as jnp

    lo, hi = jnp.min(landmarks, 0), jnp.max(landmarks, 0)
    centre = (lo + hi) / 2.0
    side = scale * jnp.max(hi - lo)
    s = size / jnp.maximum(side, 1e-6)
    t = (size / 2.0 - 0.5) - s * centre
    return jnp.array([[s, 0.0, t[0]], [0.0, s, t[1]], [0.0, 0.0, 1.0]])


def random_affine(key, config: AugmentConfig, size: int):
    """[3, 3] augmentation affine and a flip flag, as `mobilefan_tf.data.augment.random_affine`."""
    import jax
    import jax.numpy as jnp

    k = jax.random.split(key, 5)
    rotate = jax.random.uniform(k[0]) < config.rotation_prob
    angle = jnp.where(rotate, jax.random.uniform(k[1], (), minval=-1.0, maxval=1.0) * config.rotation_deg, 0.0)
    angle = angle * (math.pi / 180)
    scale = jax.random.uniform(k[2], (), minval=config.scale[0], maxval=config.scale[1])
    shift = jax.random.uniform(k[3], (2,), minval=-config.translate, maxval=config.translate) * size
    flipped = jax.random.uniform(k[4]) < config.flip_prob
    c = (size - 1) / 2.0
    fx = jnp.where(flipped, -1.0, 1.0)
    cos, sin = scale * jnp.cos(angle), scale * jnp.sin(angle)
    lin = jnp.array([[cos * fx, -sin], [sin * fx, cos]])
    t = jnp.array([c, c]) - lin @ jnp.array([c, c]) + shift
    return jnp.concatenate([jnp.concatenate([lin, t[:, None]], 1), jnp.array([[0.0, 0.0, 1.0]])], 0), flipped


def warp_image(image, matrix, size: int):
    """Bilinear resampling: output pixel u shows source pixel ``matrix^-1 u``; black outside.

    Args:
        image: [H, W, C] uint8 or float.
        matrix: [3, 3] affine, source pixel centres -> output pixel centres.
        size: S.

    Returns:
        float32 [S, S, C].
    """
    import jax.numpy as jnp

    h, w = image.shape[0], image.shape[1]
    inv = jnp.linalg.inv(matrix)
    yy, xx = jnp.meshgrid(jnp.arange(size, dtype=jnp.float32), jnp.arange(size, dtype=jnp.float32), indexing="ij")
    sx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    sy = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    x0, y0 = jnp.floor(sx), jnp.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    img = image.astype(jnp.float32)

    def tap(x, y):  # neighbours outside the image read as 0 (constant fill)
        ok = ((x >= 0) & (x < w) & (y >= 0) & (y < h))[..., None]
        return jnp.where(ok, img[jnp.clip(y, 0, h - 1), jnp.clip(x, 0, w - 1)], 0.0)

    top = tap(x0, y0) * (1 - fx) + tap(x0 + 1, y0) * fx
    bottom = tap(x0, y0 + 1) * (1 - fx) + tap(x0 + 1, y0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def photometric(image, key, config: AugmentConfig):
    """Occlusion, colour jitter, blur of one float [S, S, 3] image in 0..255 (as augment.photometric)."""
    import jax
    import jax.numpy as jnp

    k = jax.random.split(key, 9)
    size = image.shape[0]
    u = jax.random.uniform
    if config.occlusion_prob > 0:
        wh = u(k[0], (2,), minval=config.occlusion_size[0], maxval=config.occlusion_size[1]) * size
        x0y0 = u(k[1], (2,)) * (size - wh)
        colour = u(k[2], (3,), maxval=255.0)
        grid = jnp.arange(size, dtype=jnp.float32)
        in_x = (grid >= x0y0[0]) & (grid < x0y0[0] + wh[0])
        in_y = (grid >= x0y0[1]) & (grid < x0y0[1] + wh[1])
        mask = in_y[:, None, None] & in_x[None, :, None] & (u(k[3]) < config.occlusion_prob)
        image = jnp.where(mask, colour, image)
    if config.brightness > 0:
        image = image + u(k[4], minval=-config.brightness, maxval=config.brightness) * 255.0
    if config.contrast != (1.0, 1.0):
        mean = jnp.mean(image)
        image = (image - mean) * u(k[5], minval=config.contrast[0], maxval=config.contrast[1]) + mean
    if config.saturation != (1.0, 1.0):
        gray = jnp.sum(image * jnp.array([0.299, 0.587, 0.114]), -1, keepdims=True)
        image = gray + (image - gray) * u(k[6], minval=config.saturation[0], maxval=config.saturation[1])
    image = jnp.clip(image, 0.0, 255.0)
    if config.blur_prob > 0:
        sigma = u(k[7], minval=config.blur_sigma[0], maxval=config.blur_sigma[1])
        r = jnp.arange(-4, 5, dtype=jnp.float32)
        g = jnp.exp(-(r**2) / (2 * sigma**2))
        g = g / jnp.sum(g)
        pad = jnp.pad(image, ((4, 4), (4, 4), (0, 0)), mode="symmetric")
        rows = sum(g[i] * pad[:, i:i + size] for i in range(9))  # blur along x
        blurred = sum(g[i] * rows[i:i + size] for i in range(9))  # then along y
        image = jnp.where(u(k[8]) < config.blur_prob, blurred, image)
    return image


def encode_heatmaps(points, heatmap_size: int, sigma: float):
    """[K, 2] heatmap-pixel points -> [Hm, Hm, K] Gaussians of peak 1 (as heatmaps.encode_heatmaps)."""
    import jax.numpy as jnp

    grid = jnp.arange(heatmap_size, dtype=jnp.float32)
    gx = jnp.exp(-((grid[None, :] - points[:, :1]) ** 2) / (2 * sigma**2))  # [K, W]
    gy = jnp.exp(-((grid[None, :] - points[:, 1:]) ** 2) / (2 * sigma**2))  # [K, H]
    return jnp.transpose(gy[:, :, None] * gx[:, None, :], (1, 2, 0))


def make_batch_fn(size: int, heatmap_size: int, sigma: float, config: AugmentConfig | None, flip_perm):
    """Returns ``fn(images_u8 [B,H,W,3], landmarks [B,K,2], key) -> (x [B,S,S,3], heatmaps, landmarks_in)``.

    With `config` None: the plain centre crop (validation). Landmarks out are
    in input-pixel centres; heatmaps use the package's pixel-centre frame.
    """
    import jax
    import jax.numpy as jnp

    perm = jnp.asarray(flip_perm, jnp.int32)
    stride = size / heatmap_size

    def one(image, lm, key):
        m = crop_matrix(lm, size)
        flipped = jnp.array(False)
        if config is not None:
            k_geo, k_photo = jax.random.split(key)
            aug, flipped = random_affine(k_geo, config, size)
            m = aug @ m
        x = warp_image(image, m, size)
        if config is not None:
            x = photometric(x, k_photo, config)
        moved = lm @ m[:2, :2].T + m[:2, 2]
        moved = jnp.where(flipped, moved[perm], moved)
        return x, encode_heatmaps((moved + 0.5) / stride - 0.5, heatmap_size, sigma), moved

    def batch(images, landmarks, key):
        keys = jax.random.split(key, images.shape[0])
        return jax.vmap(one)(images, landmarks, keys)

    return batch


def decode_dark(heatmaps, blur_sigma: float = 1.0):
    """DARK decoding of [B, H, W, K] heatmaps to [B, K, 2] heatmap pixels (as heatmaps.decode_heatmaps)."""
    import jax.numpy as jnp

    b, h, w, k = heatmaps.shape
    maps = jnp.transpose(heatmaps, (0, 3, 1, 2)).reshape(b, k, h * w)
    idx = jnp.argmax(maps, -1)
    iy = jnp.clip(idx // w, 1, h - 2)
    ix = jnp.clip(idx % w, 1, w - 2)
    radius = max(1, math.ceil(3 * blur_sigma))
    r = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    g = jnp.exp(-(r**2) / (2 * blur_sigma**2))
    g = g / jnp.sum(g)
    # "SAME" zero-padded separable blur, then one edge-mirrored pixel of border.
    src = jnp.transpose(heatmaps, (0, 3, 1, 2))
    p = jnp.pad(src, ((0, 0), (0, 0), (0, 0), (radius, radius)))
    src = sum(g[i] * p[..., i:i + w] for i in range(2 * radius + 1))
    p = jnp.pad(src, ((0, 0), (0, 0), (radius, radius), (0, 0)))
    src = sum(g[i] * p[:, :, i:i + h] for i in range(2 * radius + 1))
    padded = jnp.pad(src, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="symmetric")
    bi, ki = jnp.arange(b)[:, None], jnp.arange(k)[None, :]

    def logv(dx, dy):
        return jnp.log(jnp.maximum(padded[bi, ki, iy + 1 + dy, ix + 1 + dx], 1e-10))

    c = logv(0, 0)
    gx, gy = 0.5 * (logv(1, 0) - logv(-1, 0)), 0.5 * (logv(0, 1) - logv(0, -1))
    hxx = logv(1, 0) - 2 * c + logv(-1, 0)
    hyy = logv(0, 1) - 2 * c + logv(0, -1)
    hxy = 0.25 * (logv(1, 1) - logv(1, -1) - logv(-1, 1) + logv(-1, -1))
    det = hxx * hyy - hxy * hxy
    ok = (det > 1e-6) & (hxx < 0)
    safe = jnp.where(ok, det, 1.0)
    off = jnp.clip(jnp.stack([-(hyy * gx - hxy * gy) / safe, -(hxx * gy - hxy * gx) / safe], -1), -1.5, 1.5)
    off = jnp.where(ok[..., None], off, 0.0)
    return jnp.stack([ix, iy], -1).astype(jnp.float32) + off


# ---------------------------------------------------------------- training
def lr_at(step: int, total: int, warmup: int, peak: float, min_ratio: float) -> float:
    """Linear warm-up then cosine, per step (as `mobilefan_tf.training.WarmupSchedule`)."""
    warm = max(warmup, 1)
    t = min(max((step - warm) / max(total - warmup, 1), 0.0), 1.0)
    decayed = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    ramp = min(1.0, (step + 1.0) / warm) if warmup > 0 else 1.0
    return peak * ramp * decayed


def nme_stats(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Inter-ocular NME, FR@0.08 and AUC@0.08 of [N, K, 2] landmarks (as `mobilefan_tf.metrics`)."""
    from mobilefan_tf.metrics import nme_per_image, summarize

    return summarize(nme_per_image(pred, gt, "300w"))


def train(
    data: dict,
    preset: str,
    workdir: str,
    epochs: int,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    warmup_epochs: float = 3.0,
    min_lr_ratio: float = 0.01,
    sigma: float = 1.0,
    seed: int = 0,
    time_budget: float = 0.0,
    shrink: bool = True,
    eval_every: int = 1,
    augment: AugmentConfig | None = None,
    teacher: str | None = None,
    teacher_preset: str = "hourglass",
    fa_weight: float = 0.0,
    fs_weight: float = 0.0,
    fa_normalize: bool = True,
    fs_pool_size: int | None = None,
    stages=("feat1", "feat2", "feat3"),
    loss_scale: float = 1.0,
) -> dict:
    """Trains `preset` on packed data with the JAX backend; returns the summary.

    Writes ``workdir/log.csv`` (one row per epoch), ``best.weights.h5`` (best
    validation NME), ``last.weights.h5`` and ``summary.json``.
    """
    import jax
    import jax.numpy as jnp
    import keras
    import optax

    from distillation.losses import feature_aligned_loss, feature_similarity_loss, make_adaptor
    from mobilefan_tf.models import build_model
    from mobilefan_tf.specs import get_spec

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"jax_train needs KERAS_BACKEND=jax, got {keras.backend.backend()!r}")
    start = time.time()
    os.makedirs(workdir, exist_ok=True)
    keras.utils.set_random_seed(seed)
    model = build_model(preset, spec="300w")
    size, hm_size = model.input_size, model.heatmap_size
    distil = fa_weight > 0 or fs_weight > 0
    net, t_fe, t_vars = model, None, ([], [])
    if distil:
        if not teacher:
            raise ValueError("--fa_weight/--fs_weight need --teacher weights")
        t_model = build_model(teacher_preset, spec="300w")
        t_model.load_weights(teacher)
        t_model.trainable = False  # frozen: all its variables are non-trainable, BN runs in inference
        t_fe = t_model.feature_extractor
        t_vars = ([v.value for v in t_fe.trainable_variables], [v.value for v in t_fe.non_trainable_variables])
        # One graph: the student's heatmaps and features, plus the FAD adaptors.
        inputs = keras.Input((size, size, 3))
        feats = model.feature_extractor(inputs)
        outputs = {"heatmaps": feats["heatmaps"]}
        for s in stages:
            outputs[s] = feats[s]
            if fa_weight > 0:
                adaptor = make_adaptor(model.feature_channels[s], t_model.feature_channels[s], f"adaptor_{s}")
                outputs[f"adapted_{s}"] = adaptor(feats[s])
        net = keras.Model(inputs, outputs)  # shares the student's variables

    spec = get_spec("300w")
    images = jnp.asarray(data["images"])
    lms = jnp.asarray(data["landmarks"], jnp.float32)
    train_idx = np.flatnonzero(~data["is_val"])
    val_idx = np.flatnonzero(data["is_val"])
    aug_fn = make_batch_fn(size, hm_size, sigma, augment, spec.flip_permutation)
    plain_fn = make_batch_fn(size, hm_size, sigma, None, spec.flip_permutation)
    steps = len(train_idx) // batch_size  # drop the remainder: one compiled shape
    warmup = int(warmup_epochs * steps)

    def heat_loss(pred, target):
        preds = pred if isinstance(pred, (list, tuple)) else [pred]  # multi-stack: every stack supervised
        return sum(jnp.mean(jnp.square(p - target)) for p in preds)

    def loss_fn(tv, ntv, x, y, tvars, scale):
        out, ntv = net.stateless_call(tv, ntv, x, training=True)
        out = out if distil else {"heatmaps": out}
        hm = heat_loss(out["heatmaps"], y)
        fa = fs = jnp.float32(0.0)
        if distil:
            t_out, _ = t_fe.stateless_call(tvars[0], tvars[1], x, training=False)
            for s in stages:
                t_feat = jax.lax.stop_gradient(t_out[s])
                if fa_weight > 0:
                    fa += feature_aligned_loss(out[f"adapted_{s}"], t_feat, normalize=fa_normalize)
                if fs_weight > 0:
                    fs += feature_similarity_loss(out[s], t_feat, fs_pool_size)
        total = hm + fa_weight * fa + fs_weight * fs
        return total * scale, (ntv, total, hm, fa, fs)

    opt = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, eps=1e-7)  # Keras' Adam epsilon

    @jax.jit
    def train_step(tv, ntv, opt_state, idx, key, tvars, scale):
        x, y, _ = aug_fn(images[idx], lms[idx], key)
        (_, (new_ntv, loss, hm, fa, fs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            tv, ntv, x, y, tvars, scale)
        updates, new_opt = opt.update(grads, opt_state, tv)
        new_tv = optax.apply_updates(tv, updates)
        # A step with a non-finite loss or gradient is skipped (and counted), so one bad
        # batch cannot turn every weight into NaN.
        finite = jnp.isfinite(loss) & jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))

        def keep(new, old):
            return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)

        terms = jnp.stack([loss, hm, fa, fs, 1.0 - finite.astype(jnp.float32), 1.0 - jnp.isfinite(loss)])
        return keep(new_tv, tv), keep(new_ntv, ntv), keep(new_opt, opt_state), terms

    @jax.jit
    def predict_step(tv, ntv, idx):
        x, _, _ = plain_fn(images[idx], lms[idx], jax.random.PRNGKey(0))
        out, _ = net.stateless_call(tv, ntv, x, training=False)
        hm = out["heatmaps"] if distil else out
        hm = hm[-1] if isinstance(hm, (list, tuple)) else hm
        return decode_dark(hm)

    # Validation crops are fixed: their matrices (source -> input pixels) are computed once.
    from mobilefan_tf.data.transforms import crop_matrix as np_crop_matrix
    from mobilefan_tf.data.transforms import face_box

    val_gt = np.asarray(data["landmarks"])[val_idx]
    val_mats = np_crop_matrix(face_box(val_gt), size)  # [N, 2, 3], scale + shift only

    def evaluate(tv, ntv) -> dict:
        preds = []
        for i in range(0, len(val_idx), 64):
            chunk = val_idx[i:i + 64]
            pad = np.pad(chunk, (0, 64 - len(chunk)), mode="edge")  # one compiled shape
            coords = np.asarray(predict_step(tv, ntv, jnp.asarray(pad)))[: len(chunk)]
            preds.append(coords)
        heat = np.concatenate(preds)
        inputs_xy = (heat + 0.5) * (size / hm_size) - 0.5
        # Back to source pixels through the inverse of each face's crop.
        src = (inputs_xy - val_mats[:, None, :, 2]) / val_mats[:, None, 0:1, 0]
        return nme_stats(src, val_gt)

    tv = [v.value for v in net.trainable_variables]
    ntv = [v.value for v in net.non_trainable_variables]
    opt_state = opt.init(tv)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    planned, epoch_times, best, history = epochs, [], math.inf, []
    log_path = os.path.join(workdir, "log.csv")
    fields = ["epoch", "seconds", "lr", "loss", "heatmap_loss", "fa_loss", "fs_loss", "val_nme", "val_fr", "val_auc",
              "skipped_steps", "nonfinite_loss_steps"]
    with open(log_path, "w", newline="") as f:
        csv.writer(f).writerow(fields)

    def save(name: str):
        for v, value in zip(net.trainable_variables, tv, strict=True):
            v.assign(value)
        for v, value in zip(net.non_trainable_variables, ntv, strict=True):
            v.assign(value)
        model.save_weights(os.path.join(workdir, name))  # the student alone, no adaptors

    def record_eval(row: dict) -> None:
        """Validates, adds the metrics to the log row, and saves a new best."""
        nonlocal best
        stats = evaluate(tv, ntv)
        row.update(val_nme=stats["nme"], val_fr=stats["failure_rate"], val_auc=stats["auc"])
        if stats["nme"] < best:
            best = stats["nme"]
            save("best.weights.h5")

    # Numerics fallbacks, taken in order when most steps of a stretch are non-finite (seen once
    # on an H200 with the paper student, never on CPU): a 1024x loss scale (Adam is nearly
    # scale-free), then full-float32 matmuls/convolutions instead of TF32 as well.
    modes = [(loss_scale, None), (loss_scale * 1024, None), (loss_scale * 1024, "highest")]
    mode, mode_steps, mode_skipped, switches = 0, 0, 0, []

    def step(*args):
        scale, precision = modes[mode]
        if precision is None:
            return train_step(*args, jnp.float32(scale))
        with jax.default_matmul_precision(precision):
            return train_step(*args, jnp.float32(scale))

    evaluate(tv, ntv)  # compiles the evaluation now, so no epoch's timing includes it
    epoch, stopped_early = 0, False
    while epoch < planned:
        t0 = time.time()
        order = rng.permutation(train_idx)
        sums, synced, skipped, bad_loss = np.zeros(4), 0, 0, 0
        pending = jnp.zeros(2)
        for s in range(steps):
            lr = lr_at(epoch * steps + s, planned * steps, warmup, learning_rate, min_lr_ratio)
            opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
            key, sub = jax.random.split(key)
            batch = jnp.asarray(order[s * batch_size:(s + 1) * batch_size])
            tv, ntv, opt_state, terms = step(tv, ntv, opt_state, batch, sub, t_vars)
            pending = pending + terms[4:]  # stays on the device until read
            mode_steps += 1
            if s % 16 == 0 or s == steps - 1:  # read back sparsely: each read waits for the GPU
                host = np.asarray(terms[:4])
                if np.all(np.isfinite(host)):
                    sums, synced = sums + host, synced + 1
                counts = np.asarray(pending).astype(int)
                pending = jnp.zeros(2)
                skipped, bad_loss, mode_skipped = skipped + counts[0], bad_loss + counts[1], mode_skipped + counts[0]
                if mode_steps >= 16 and mode_skipped > mode_steps / 2 and mode + 1 < len(modes):
                    mode += 1
                    switches.append({"epoch": epoch + 1, "step": s, "skipped": int(mode_skipped),
                                     "of": int(mode_steps), "now": {"loss_scale": modes[mode][0],
                                                                     "precision": modes[mode][1]}})
                    logging.warning("%d of %d steps non-finite (%d in the forward loss): now loss scale %g, "
                                    "precision %s", mode_skipped, mode_steps, bad_loss, *modes[mode])
                    mode_steps = mode_skipped = 0
        epoch += 1
        row = {"epoch": epoch, "lr": lr, "skipped_steps": int(skipped), "nonfinite_loss_steps": int(bad_loss),
               **dict(zip(fields[3:7], sums / max(synced, 1) if synced else [math.nan] * 4, strict=True))}
        if epoch % eval_every == 0 or epoch == planned:
            record_eval(row)
        epoch_times.append(time.time() - t0)
        row["seconds"] = round(time.time() - start, 1)
        history.append(row)
        with open(log_path, "a", newline="") as f:
            csv.DictWriter(f, fields).writerow(row)
        logging.info("epoch %d/%d  %.1fs  loss %.5f  val_nme %s", epoch, planned, epoch_times[-1], row["loss"],
                     f"{row['val_nme'] * 100:.2f}%" if "val_nme" in row else "-")
        if time_budget > 0:
            elapsed = time.time() - start
            # The first epoch includes compilation: estimate from the later ones (median: robust
            # to the evaluation epochs and to other jobs sharing the GPU).
            recent = epoch_times[1:][-5:] or epoch_times
            per_epoch = float(np.median(recent))
            fits = int((time_budget - elapsed - 10) / per_epoch)  # 10 s for the final save
            if epoch + fits < planned:
                if shrink and epoch >= 4:
                    new = max(epoch + 1, epoch + fits)
                    if new < planned:
                        logging.warning("time budget: plan shortened from %d to %d epochs", planned, new)
                        planned = new
                elif fits <= 0:
                    logging.warning("time budget spent after %d of %d epochs: stopping", epoch, planned)
                    stopped_early = True
                    break
    if "val_nme" not in history[-1]:  # stopped between evaluations
        record_eval(history[-1])
    save("last.weights.h5")
    summary = {
        "preset": preset, "epochs_done": epoch, "epochs_planned": planned, "stopped_early": stopped_early,
        "best_val_nme": best, "last": history[-1], "seconds": round(time.time() - start, 1),
        "device": str(jax.devices()[0]), "batch_size": batch_size, "learning_rate": learning_rate,
        "fa_weight": fa_weight, "fs_weight": fs_weight, "teacher_preset": teacher_preset if distil else None,
        "train_faces": int(len(train_idx)), "val_faces": int(len(val_idx)), "loss_scale": loss_scale,
        "skipped_steps": int(sum(r["skipped_steps"] for r in history)), "numerics_fallbacks": switches,
    }
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def weights_to_keras(preset: str, weights: str, out_path: str) -> str:
    """Rebuilds `preset`, loads a trainer's ``.weights.h5`` and saves a full ``.keras`` model."""
    from mobilefan_tf.models import build_model

    if not os.path.isfile(weights):
        raise FileNotFoundError(f"Weights file not found: {weights}")
    model = build_model(preset, spec="300w")
    model.load_weights(weights)
    model.save(out_path)
    return out_path


def main(argv):
    del argv
    # Bad files give absl's one-line UsageError (naming the file), not a traceback.
    if FLAGS.to_keras:
        if not FLAGS.weights:
            raise app.UsageError("--to_keras needs --weights")
        try:
            print(weights_to_keras(FLAGS.preset, FLAGS.weights, FLAGS.to_keras))
        except (OSError, ValueError) as err:
            message = str(err).strip().splitlines()[0]
            raise app.UsageError(message if FLAGS.weights in message else f"{FLAGS.weights}: {message}") from None
        return
    if FLAGS.pack:
        try:
            print(json.dumps(pack_dataset(FLAGS.data_dir, FLAGS.pack)))
        except (OSError, ValueError) as err:
            raise app.UsageError(str(err).strip().splitlines()[0]) from None
        return
    if not FLAGS.data:
        raise app.UsageError("--data (a packed .npz) or --pack is required")
    if FLAGS.teacher and not os.path.isfile(FLAGS.teacher):
        raise app.UsageError(f"--teacher weights file not found: {FLAGS.teacher}")
    try:
        data = load_packed(FLAGS.data)
    except (OSError, ValueError) as err:
        raise app.UsageError(str(err).strip().splitlines()[0]) from None  # names the file
    if FLAGS.limit:
        keep = np.concatenate([np.flatnonzero(~data["is_val"])[: FLAGS.limit], np.flatnonzero(data["is_val"])])
        data = {k: v[keep] for k, v in data.items()}
    summary = train(
        data, FLAGS.preset, FLAGS.workdir, FLAGS.epochs, FLAGS.batch_size, FLAGS.learning_rate, FLAGS.warmup_epochs,
        FLAGS.min_lr_ratio, FLAGS.sigma, FLAGS.seed, FLAGS.time_budget, FLAGS.shrink, FLAGS.eval_every,
        AugmentConfig() if FLAGS.augment else None, FLAGS.teacher, FLAGS.teacher_preset, FLAGS.fa_weight,
        FLAGS.fs_weight, FLAGS.fa_normalize, FLAGS.fs_pool_size, tuple(FLAGS.stages), FLAGS.loss_scale,
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
