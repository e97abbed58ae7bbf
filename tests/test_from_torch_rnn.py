"""from_torch for recurrent models (sw/from_torch.py, sw/rnn_torch.py): QuantLSTM / QuantGRU of every trainable
scheme and plain nn.LSTM / nn.GRU, followed by dense layers.

A synthetic sequence task (T = 12 steps of 4 features: is the first half's sum of feature 0 larger than the second
half's?) is learnt briefly by each model; the exported integer network is checked (a) exactly against the
independent integer model of tests/test_sw_rnn.py plus the dense layer's requantisation written out in
tests/test_sw_network.py, and (b) against the float model: argmax agreement and the logits' largest error relative
to their largest magnitude, both asserted with the bounds measured below. The refusals are pinned, and a QONNX
graph with a recurrent node is refused by name in tests/test_qonnx.py. One torch thread; a few seconds on one core."""

import numpy as np
import pytest
import torch
from torch import nn

from peforge.sw.from_torch import from_torch
from peforge.sw.network import load
from peforge.sw.recurrent import GRU, LSTM
from peforge.sw.rnn_torch import QuantGRU, QuantLSTM

from tests.test_sw_network import reference_acc, requant_reference
from tests.test_sw_rnn import reference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T, F, H = 12, 4, 8


def task(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, T, F, generator=g)
    y = ((x[:, :T // 2, 0].sum(1) - x[:, T // 2:, 0].sum(1)) > 0).long()
    return x, y


@pytest.fixture(scope="module")
def data():
    return task(256, 0), task(128, 1)


def train(model, x, y, steps=40):
    opt = torch.optim.Adam(model.parameters(), 0.03)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def integer_reference(net, x):
    """The logits of a [recurrent (, flatten), dense] network, from the independent models."""
    h = reference(net.layers[0], x)
    h = h.reshape(len(x), -1) if net.layers[0].return_sequences else h[:, -1]
    dense = net.layers[-1]
    return requant_reference(reference_acc(dense, h), dense)


def agreement(net, logits_float, x_real):
    xi = net.quantize_input(x_real)
    logits = net.golden(xi)
    real = logits * net.out_scale
    agree = float(np.mean(real.argmax(1) == logits_float.argmax(1)))
    rel = float(np.abs(real - logits_float).max() / np.abs(logits_float).max())
    return xi, logits, agree, rel


#: Measured on the cases below (40 Adam steps, 8-bit inputs and hidden state, default RNN formats; 128 test
#: sequences): argmax agreement 0.96 (N:M GRU) to 1.0, largest logit error 1.3 % (SP2 LSTM) to 8.6 % (fixed LSTM) of
#: the largest logit (the 8-bit hidden state and the inputs' quantisation dominate). Asserted with margin:
MIN_AGREEMENT, MAX_RELATIVE = 0.94, 0.15

SCHEMES = ["float", "fixed", "sp2", "msq", "nm", "circulant"]


@pytest.mark.parametrize("cls", [QuantLSTM, QuantGRU])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_quant_recurrent_every_scheme(cls, scheme, data, tmp_path):
    (x, y), (xt, yt) = data
    torch.manual_seed(3)
    sequences = scheme in ("sp2", "circulant")            # some models feed the whole sequence to the head
    layers = [cls(F, H, scheme=scheme, return_sequences=sequences)] + \
        ([nn.Flatten(), nn.Linear(T * H, 2)] if sequences else [nn.Linear(H, 2)])
    model = train(nn.Sequential(*layers), x, y)
    net = from_torch(model, x)
    rnn = net.layers[0]
    assert isinstance(rnn, LSTM if cls is QuantLSTM else GRU)
    want_scheme = "fixed" if scheme == "float" else scheme
    assert rnn.w.scheme == rnn.u.scheme == want_scheme
    assert net.input.shape == (T, F) and rnn.out_shape == ((T, H) if sequences else (H,))
    with torch.no_grad():
        logits_float = model(xt).double().numpy()
    xi, logits, agree, rel = agreement(net, logits_float, xt.numpy())
    assert agree >= MIN_AGREEMENT and rel <= MAX_RELATIVE, (agree, rel)
    np.testing.assert_array_equal(logits[:24], integer_reference(net, xi[:24].reshape(-1, T, F)))
    float_accuracy = float(np.mean(logits_float.argmax(1) == yt.numpy()))
    assert float_accuracy > 0.6                          # it learnt something: the agreement is not trivial
    net.save(tmp_path)
    assert load(tmp_path) == net


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_plain_torch_recurrent_modules_are_their_last_hidden_state(cls, data):
    (x, _), (xt, _) = data
    torch.manual_seed(4)
    rnn, head = cls(F, H, batch_first=True), nn.Linear(H, 3)
    net = from_torch(nn.Sequential(rnn, head), x)
    assert net.layers[0].kind == ("lstm" if cls is nn.LSTM else "gru") and net.layers[0].w.w_bits == 8
    with torch.no_grad():
        logits_float = head(rnn(xt)[0][:, -1]).double().numpy()
    xi, logits, agree, rel = agreement(net, logits_float, xt.numpy())
    assert agree >= MIN_AGREEMENT and rel <= MAX_RELATIVE, (agree, rel)
    np.testing.assert_array_equal(logits[:16], integer_reference(net, xi[:16].reshape(-1, T, F)))


def _x(shape=(4, T, F)):
    return torch.zeros(shape)


@pytest.mark.parametrize("model, x, error, message", [
    (nn.Sequential(nn.LSTM(F, H), nn.Linear(H, 2)), _x(), ValueError,
     r"^Model layer 0 \(LSTM\): LSTM batch_first must be True \(inputs \[N, T, F\]\), not False$"),
    (nn.Sequential(nn.GRU(F, H, num_layers=2, batch_first=True), nn.Linear(H, 2)), _x(), ValueError,
     r"^Model layer 0 \(GRU\): GRU num_layers must be 1 \(one layer per kind\), not 2$"),
    (nn.Sequential(nn.LSTM(F, H, batch_first=True, bidirectional=True), nn.Linear(H, 2)), _x(), ValueError,
     r"^Model layer 0 \(LSTM\): LSTM bidirectional must be False \(one direction\), not True$"),
    (nn.Sequential(nn.LSTM(F, H, batch_first=True, proj_size=2), nn.Linear(2, 2)), _x(), ValueError,
     r"^Model layer 0 \(LSTM\): LSTM proj_size must be 0 \(no projection\), not 2$"),
    (nn.Sequential(nn.Linear(F, F), QuantLSTM(F, H), nn.Linear(H, 2)), _x(), ValueError,
     r"^Model layer 1 \(QuantLSTM\) must be the model's first layer \(it takes the input sequence \[N, T, F\]\), "
     r"not after Linear"),
    (nn.Sequential(QuantGRU(F, H), nn.ReLU(), nn.Linear(H, 2)), _x(), ValueError,
     r"^Model layer 1 must follow a linear, convolution or average pooling layer, not ReLU\(\)$"),
    (nn.Sequential(QuantGRU(F, H), nn.Linear(H, 2), QuantGRU(2, 2)), _x(), ValueError,
     r"^Model layer 2 \(QuantGRU\) must be the model's first layer"),
    (nn.Sequential(nn.Linear(F, 2), QuantLSTM(2, H)), _x(), ValueError, r"^Model layer 1 \(QuantLSTM\) must be"),
    (nn.Sequential(QuantLSTM(F, H), nn.Linear(H, 2)), _x((4, F)), ValueError,
     r"^Calibration data of a recurrent model must be \[N, T, F\], not shape \(4, 4\)$"),
    (nn.Sequential(QuantLSTM(F + 1, H), nn.Linear(H, 2)), _x(), ValueError,
     r"^Model layer 0 \(QuantLSTM\) input_size must be the 4 features of the calibration data \[N, T, F\], not 5$"),
])
def test_model_errors(model, x, error, message):
    with pytest.raises(error, match=message) as info:
        from_torch(model, x)
    assert "\n" not in str(info.value)


def test_recurrent_last_is_refused_and_rnn_settings_are_checked():
    with pytest.raises(ValueError, match=r"^Model must have a linear or convolution layer, not none$"):
        from_torch(nn.Sequential(QuantLSTM(F, H)), _x())
    with pytest.raises(ValueError, match=r"^Rnn settings must be among 'table_bits', 'table_frac', 'table_range', "
                                         r"'cell_bits', not 'bits'$"):
        from_torch(nn.Sequential(QuantLSTM(F, H), nn.Linear(H, 2)), _x(), rnn={"bits": 3})
    with pytest.raises(ValueError, match=r"^QuantLSTM hidden_size must be a multiple of block = 4 \(every gate "
                                         r"matrix block-circulant\), not 6$"):
        QuantLSTM(F, 6, scheme="circulant")
    with pytest.raises(ValueError, match=r"^QuantGRU scheme must be one of 'float', 'fixed', 'sp2', 'msq', 'nm', "
                                         r"'circulant', not 'crossbar'$"):
        QuantGRU(F, H, scheme="crossbar")


def test_rnn_formats_follow_the_settings(data):
    (x, _), _ = data
    torch.manual_seed(5)
    net = from_torch(nn.Sequential(QuantLSTM(F, H), nn.Linear(H, 2)), x, act_bits=6,
                     rnn={"table_bits": 8, "table_frac": 9, "table_range": 6.0, "cell_bits": 16})
    rnn = net.layers[0]
    assert (rnn.tables.bits, rnn.tables.frac, rnn.tables.scale) == (8, 9, 6.0 / 128)
    assert (rnn.out_bits, rnn.out_frac, rnn.cell.bits, rnn.cell.frac) == (6, 5, 16, 16 - 1 - 4)
    # the cell requantisation maps 2^-cell.frac onto table codes of 6/128 (to the 31-bit multiplier)
    assert rnn.cell.multiplier * 2.0 ** -rnn.cell.shift == pytest.approx(2.0 ** -11 / (6.0 / 128), rel=2 ** -29)
