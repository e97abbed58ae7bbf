"""Compile your own model: a 13-24-16-3 MLP on sklearn's wine data (ships with scikit-learn, no download), with
a different scheme per layer, from training to a saved integer network that `peforge compile` takes.

    .venv/bin/python docs/examples/wine.py build/wine         # trains (seconds), writes build/wine/{net,x.npy,y.npy}
    .venv/bin/peforge compile build/wine/net -o build/wine/acc
    .venv/bin/peforge infer build/wine/acc --input build/wine/x.npy --labels build/wine/y.npy --rtl

docs/network.md walks through it and shows what it prints.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split

from peforge.sw.from_torch import from_torch
from peforge.sw.layers import FixedLinear, SP2Linear
from peforge.sw.nm import NMFormat
from peforge.sw.nm_torch import NMSparseLinear
from peforge.sw.sp2 import SP2Format

out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/wine")
x, y = load_wine(return_X_y=True)
x = (x - x.mean(0)) / x.std(0)                       # standardised features, then 8-bit signed inputs
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)

torch.manual_seed(0)
torch.set_num_threads(1)
model = torch.nn.Sequential(
    FixedLinear(13, 24, w_bits=8), torch.nn.ReLU(),                 # fixed-mac
    NMSparseLinear(24, 16, fmt=NMFormat(2, 4)), torch.nn.ReLU(),    # nm-sparse, 2:4
    SP2Linear(16, 3, fmt=SP2Format(5)),                            # sp2-mac, 5-bit SP2 codes
)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
xt, yt = torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train)
for epoch in range(200):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(xt), yt)
    loss.backward()
    opt.step()
model.eval()
with torch.no_grad():
    float_acc = (model(torch.tensor(x_test, dtype=torch.float32)).argmax(1).numpy() == y_test).mean()

net = from_torch(model, x_train, input_bits=8)     # scales calibrated on the training set
net.save(out / "net")
x_int = net.quantize_input(x_test)
np.save(out / "x.npy", x_int)
np.save(out / "y.npy", y_test.astype(np.int64))
golden_acc = (net.golden(x_int).argmax(1) == y_test).mean()
print(f"float accuracy {100 * float_acc:.1f} %, integer golden {100 * golden_acc:.1f} % on {len(y_test)} test samples")
print(f"wrote {out / 'net'} ({', '.join(layer.scheme for layer in net.layers)}), {out / 'x.npy'}, {out / 'y.npy'}")
