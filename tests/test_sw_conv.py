"""Convolution and pooling kinds (sw/conv.py): the exact integer golden against independent math, torch's
conv1d / conv2d / max_pool / avg_pool on the integer tensors in float64 (every value below 2^53, so exact), and
the manifest round trip of every kind."""

import json
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from peforge.sw.conv import AvgPool, Conv, Flatten, GlobalAvgPool, MaxPool
from peforge.sw.network import SCHEMES, CirculantWeights, InputSpec, Layer, Network, load
from peforge.sw import circulant

from tests.test_sw_network import requant_reference


def _weights(rng, scheme, rows, cols, in_bits, signed):
    cls = SCHEMES[scheme]
    unit = {"nm": 4, "circulant": 4}.get(scheme, 1)
    return cls.random(rng, cols, rows, in_bits, signed, unit)


def _torch_weight(dense, c_out, c_in_g, kernel):
    """``[C_out, kh * kw * C_in/g]`` in (kernel row, kernel column, channel) order -> torch's ``[C_out, C_in/g,
    kh, kw]``: written here from the definition, not from sw/conv.py."""
    kh, kw = kernel
    w = np.asarray(dense, np.float64).reshape(c_out, kh, kw, c_in_g)
    return torch.from_numpy(w.transpose(0, 3, 1, 2).copy())


def _torch_conv(x, weight, stride, padding, groups, dims):
    t = torch.from_numpy(np.asarray(x, np.float64))
    if dims == 1:
        left, right = padding
        return F.conv1d(F.pad(t, (left, right)), weight[:, :, 0, :], stride=stride[0], groups=groups).numpy()
    top, bottom, left, right = padding
    return F.conv2d(F.pad(t, (left, right, top, bottom)), weight, stride=tuple(stride), groups=groups).numpy()


def _requant(rng, channels, shift=14):
    return rng.integers(1, 1 << 10, channels), shift, rng.integers(-(1 << 12), 1 << 12, channels)


CASES = [
    # scheme, dims, (C_in, spatial...), C_out, kernel, stride, padding, groups
    ("fixed", 2, (3, 7, 6), 5, (3, 2), (1, 2), (1, 0, 0, 1), 1),
    ("sp2", 2, (2, 5, 5), 4, (3, 3), (2, 2), (1, 1, 1, 1), 1),
    ("msq", 2, (4, 4, 6), 6, (2, 3), (1, 1), (0, 1, 2, 0), 1),
    ("nm", 2, (4, 6, 4), 3, (2, 2), (1, 1), (0, 0, 0, 0), 1),
    ("crossbar", 2, (2, 4, 4), 3, (3, 3), (1, 1), (1, 1, 1, 1), 1),
    ("fixed", 2, (4, 5, 5), 4, (3, 3), (1, 1), (1, 1, 1, 1), 4),      # depthwise
    ("sp2", 2, (3, 6, 4), 6, (3, 3), (2, 1), (1, 1, 1, 1), 3),        # depthwise, multiplier 2
    ("nm", 1, (8, 9), 3, (3,), (2,), (1, 1), 1),
    ("fixed", 1, (2, 10), 4, (4,), (1,), (2, 1), 1),
    ("crossbar", 1, (3, 7), 3, (2,), (2,), (0, 1), 3),                 # depthwise crossbar
]


@pytest.mark.parametrize("scheme, dims, shape, c_out, kernel, stride, padding, groups", CASES)
def test_conv_equals_torch_on_integers(scheme, dims, shape, c_out, kernel, stride, padding, groups):
    rng = np.random.default_rng(zlib.crc32(repr((scheme, dims, shape, groups)).encode()))
    signed = scheme != "crossbar"
    in_bits = 6
    c_in = shape[0]
    window = int(np.prod(kernel)) * (c_in // groups)
    w = _weights(rng, scheme, c_out, window, in_bits, signed)
    m, s, b = _requant(rng, c_out)
    layer = Conv(w, shape, kernel, stride, padding, groups, m, s, b, True, in_bits, signed, 8, False, dims=dims)
    lo, hi = layer.in_range
    x = rng.integers(lo, hi + 1, (5, *shape))
    x[0] = hi
    x[1] = lo
    acc = layer.accumulate(x)
    kernel2d = (1, *kernel) if dims == 1 else kernel
    want = _torch_conv(x, _torch_weight(w.dense(), c_out, c_in // groups, kernel2d), stride, padding, groups, dims)
    assert acc.shape == want.shape == (5, *layer.out_shape)
    np.testing.assert_array_equal(acc, want.astype(np.int64))
    # requantised per output channel, as a dense layer would each position's accumulators
    flat = np.moveaxis(acc, 1, -1).reshape(-1, c_out)
    want_y = np.moveaxis(requant_reference(flat, layer).reshape(5, *acc.shape[2:], c_out), -1, 1)
    np.testing.assert_array_equal(layer.forward(x), want_y)


def test_circulant_conv_is_a_block_circulant_matrix_at_every_kernel_position():
    """CirCNN: the C_out x C_in matrix at each kernel position is block-circulant; the golden is the PE's FFT
    schedule on the im2col rows, taken here with torch's unfold (an independent im2col)."""
    rng = np.random.default_rng(9)
    c_in, c_out, kernel, in_bits = 8, 8, (2, 2), 6
    w = CirculantWeights.random(rng, kernel[0] * kernel[1] * c_in, c_out, in_bits, True, 4)
    m, s, b = _requant(rng, c_out)
    layer = Conv(w, (c_in, 4, 5), kernel, (1, 1), (0, 1, 1, 0), 1, m, s, b, False, in_bits, True, 12, True)
    x = rng.integers(-32, 32, (3, c_in, 4, 5))
    t = F.pad(torch.from_numpy(x.astype(np.float64)), (1, 0, 0, 1))
    patches = F.unfold(t, kernel).numpy().astype(np.int64)          # [N, C * kh * kw (c slowest), positions]
    n, _, positions = patches.shape
    rows = patches.reshape(n, c_in, kernel[0] * kernel[1], positions).transpose(0, 3, 2, 1).reshape(n * positions, -1)
    y = circulant.golden_matvec(rows.reshape(len(rows), -1, 4), w.spectra, w.fmt).reshape(len(rows), -1)[:, :c_out]
    want = y.reshape(n, *layer.out_shape[1:], c_out)
    np.testing.assert_array_equal(np.moveaxis(layer.accumulate(x), 1, -1), want)


@pytest.mark.parametrize("dims, shape, kernel, stride", [(2, (3, 6, 7), (2, 2), (2, 2)), (2, (2, 5, 5), (3, 2), (1, 2)),
                                                         (1, (4, 9), (3,), (2,))])
def test_pools_equal_torch(dims, shape, kernel, stride):
    rng = np.random.default_rng(4)
    x = rng.integers(-100, 100, (6, *shape))
    t = torch.from_numpy(x.astype(np.float64))
    pool = MaxPool(shape, kernel, stride, 8, True, dims=dims)
    f_max = F.max_pool1d if dims == 1 else F.max_pool2d
    f_avg = F.avg_pool1d if dims == 1 else F.avg_pool2d
    np.testing.assert_array_equal(pool.forward(x), f_max(t, kernel, stride).numpy().astype(np.int64))
    m, s, b = _requant(rng, shape[0])
    avg = AvgPool(shape, kernel, stride, m, s, b, False, 8, True, 10, True, dims=dims)
    window = int(np.prod(kernel))
    sums = np.rint(f_avg(t, kernel, stride).numpy() * window).astype(np.int64)
    np.testing.assert_array_equal(avg.accumulate(x), sums)
    flat = np.moveaxis(sums, 1, -1).reshape(-1, shape[0])
    want = np.moveaxis(requant_reference(flat, avg).reshape(6, *sums.shape[2:], shape[0]), -1, 1)
    np.testing.assert_array_equal(avg.forward(x), want)


def test_global_avgpool_and_flatten():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 255, (4, 3, 5, 2))
    m, s, b = _requant(rng, 3)
    gap = GlobalAvgPool((3, 5, 2), multiplier=m, shift=s, offset=b, relu=False, in_bits=8, in_signed=False,
                        out_bits=16, out_signed=True)
    assert gap.out_shape == (3, 1, 1)
    np.testing.assert_array_equal(gap.accumulate(x)[:, :, 0, 0], x.sum(axis=(2, 3)))
    flat = Flatten((3, 5, 2), 8, False)
    np.testing.assert_array_equal(flat.forward(x), x.reshape(4, -1))
    assert flat.out_shape == (30,)


def _cnn(rng):
    """conv 3x3 (pad 1) -> maxpool 2 -> depthwise 3x3 -> avgpool 2 -> flatten -> dense; 8-bit unsigned."""
    layers = []
    w0 = _weights(rng, "fixed", 4, 9 * 2, 8, False)
    layers.append(Conv(w0, (2, 8, 8), (3, 3), (1, 1), (1, 1, 1, 1), 1, *_requant(rng, 4, 12), True, 8, False, 8,
                       False, name="conv0"))
    layers.append(MaxPool((4, 8, 8), (2, 2), (2, 2), 8, False))
    w2 = _weights(rng, "sp2", 4, 9, 8, False)
    layers.append(Conv(w2, (4, 4, 4), (3, 3), (1, 1), (1, 1, 1, 1), 4, *_requant(rng, 4, 10), True, 8, False, 8,
                       False))
    layers.append(AvgPool((4, 4, 4), (2, 2), (2, 2), *_requant(rng, 4, 6), False, 8, False, 8, False))
    layers.append(Flatten((4, 2, 2), 8, False))
    w5 = _weights(rng, "nm", 3, 16, 8, False)
    layers.append(Layer(w5, *_requant(rng, 3, 10), False, 8, False, 20, True))
    return Network(InputSpec(128, 8, False, shape=(2, 8, 8)), tuple(layers))


def test_a_cnn_runs_layer_by_layer_and_round_trips(tmp_path):
    rng = np.random.default_rng(6)
    net = _cnn(rng)
    x = rng.integers(0, 256, (7, 128))
    got = net.golden(x)
    # the same layers one by one, each given the previous output in its own shape
    y = x.reshape(7, 2, 8, 8)
    for layer in net.layers:
        y = layer.forward(y)
    np.testing.assert_array_equal(got, y)
    again = load(net.save(tmp_path / "cnn"))
    assert again == net and again.digest() == net.digest() and again.input.shape == (2, 8, 8)
    kinds = [entry.get("kind", "dense") for entry in json.loads((tmp_path / "cnn" / "network.json").read_text())["layers"]]
    assert kinds == ["conv2d", "maxpool", "conv2d", "avgpool", "flatten", "dense"]
    np.testing.assert_array_equal(again.golden(x), got)


def test_conv_errors():
    rng = np.random.default_rng(8)
    w = _weights(rng, "fixed", 4, 18, 8, False)
    m, s, b = _requant(rng, 4)
    with pytest.raises(ValueError, match=r"^Conv2d groups must be 1 or the 2 input channels, not 3$"):
        Conv(w, (2, 5, 5), (3, 3), (1, 1), (0, 0, 0, 0), 3, m, s, b, False, 8, False, 8, True)
    with pytest.raises(ValueError, match=r"^Conv2d weights must have 27 columns \(kernel 3 x 3 x 3 input channels "
                                         r"per group\), not 18$"):
        Conv(w, (3, 5, 5), (3, 3), (1, 1), (0, 0, 0, 0), 1, m, s, b, False, 8, False, 8, True)
    with pytest.raises(ValueError, match=r"^Conv2d kernel must fit the padded input \(2, 2\), not \(3, 3\)$"):
        Conv(w, (2, 2, 2), (3, 3), (1, 1), (0, 0, 0, 0), 1, m, s, b, False, 8, False, 8, True)
    with pytest.raises(ValueError, match=r"^Conv2d input shape must be \(channels, height, width\) for a 2-D layer, "
                                         r"not \(2, 5\)$"):
        Conv(w, (2, 5), (3, 3), (1, 1), (0, 0, 0, 0), 1, m, s, b, False, 8, False, 8, True)
    with pytest.raises(ValueError, match=r"^layers\[1\] input shape must be \(4, 8, 8\) \(layers\[0\] output\), "
                                         r"not \(4, 7, 8\)$"):
        good = _cnn(rng)
        Network(good.input, (good.layers[0], MaxPool((4, 7, 8), (2, 2), (2, 2), 8, False), *good.layers[2:]))
