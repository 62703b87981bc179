"""Model cost: multiply-accumulates (MACs) of the convolution and dense layers, and parameter counts."""

from __future__ import annotations

import math

import keras


def _shape(tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape[1:])


def layer_macs(layer: keras.layers.Layer) -> int:
    """MACs of one call of a Conv2D / DepthwiseConv2D / SeparableConv2D / Conv2DTranspose / Dense, for batch 1.

    Other layers (BN, activations, adds, pooling) count 0: they are cheap
    next to these and fused away in TFLite. Needs a built functional layer
    (`layer.input` / `layer.output` known).
    """
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        out = _shape(layer.output)
        return math.prod(out[:-1]) * out[-1] * kh * kw
    if isinstance(layer, keras.layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        in_c = _shape(layer.input)[-1]
        out = _shape(layer.output)
        depthwise = math.prod(out[:-1]) * in_c * layer.depth_multiplier * kh * kw
        return depthwise + math.prod(out[:-1]) * in_c * layer.depth_multiplier * out[-1]
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        inp = _shape(layer.input)
        return math.prod(inp[:-1]) * inp[-1] * kh * kw * layer.filters
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        in_c = _shape(layer.input)[-1]
        out = _shape(layer.output)
        return math.prod(out[:-1]) * out[-1] * kh * kw * in_c // layer.groups
    if isinstance(layer, keras.layers.Dense):
        inp = _shape(layer.input)
        return math.prod(inp) * layer.units
    return 0


def count_macs(model: keras.Model) -> int:
    """Total MACs of one forward pass of a batch-1 image (nested models included)."""
    total = 0
    for layer in model.layers:
        total += count_macs(layer) if isinstance(layer, keras.Model) else layer_macs(layer)
    return total


def count_params(model: keras.Model) -> int:
    """Number of weights (trainable and not)."""
    return int(sum(math.prod(w.shape) for w in model.weights))
