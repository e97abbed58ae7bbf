"""Recurrent layers on sklearn's digits read as 8 rows of 8 features (docs/rnn.md): an LSTM and a GRU of every
trainable scheme, trained briefly, exported with from_torch; prints float and golden accuracy and the recurrent
weights' storage bits. Software only (`peforge bench rnn` runs such models on the hardware). Run: ``python docs/examples/rnn_digits.py``
(about a minute on one core)."""

import numpy as np
import torch
from sklearn.datasets import load_digits

from peforge.sw.from_torch import from_torch
from peforge.sw.rnn_torch import QuantGRU, QuantLSTM

torch.set_num_threads(1)
digits = load_digits()
x = torch.tensor(digits.images / 16.0, dtype=torch.float32)        # [N, 8 rows (time), 8 columns (features)]
y = torch.tensor(digits.target)
perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
train, test = perm[:1400], perm[1400:]
H = 32

print(f"{'model':28s} {'float':>6s} {'golden':>6s} {'weight bits':>11s}")
for cls in (QuantLSTM, QuantGRU):
    for scheme, options in (("fixed", {}), ("sp2", {}), ("nm", {}), ("circulant", {"block": 4}),
                            ("circulant", {"block": 8})):
        torch.manual_seed(0)
        model = torch.nn.Sequential(cls(8, H, scheme=scheme, **options), torch.nn.Linear(H, 10))
        opt = torch.optim.Adam(model.parameters(), 0.01)
        for epoch in range(150):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[train]), y[train]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc_float = float((model(x[test]).argmax(1) == y[test]).float().mean())
        net = from_torch(model, x[train], input_signed=False)
        acc_golden = float(np.mean(net.predict(net.quantize_input(x[test].numpy())) == y[test].numpy()))
        rnn = net.layers[0]
        bits = rnn.w.storage_bits() + rnn.u.storage_bits()
        name = f"{cls.__name__} {scheme}" + (f" k={options['block']}" if options else "")
        print(f"{name:28s} {100 * acc_float:6.1f} {100 * acc_golden:6.1f} {bits:11d}")
