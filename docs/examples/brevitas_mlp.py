"""Worked example (docs/qonnx.md): train a small Brevitas MLP on scikit-learn's digits, export it with
``export_qonnx``, compile it with ``peforge compile``, and check ``peforge infer --rtl`` against ``execute_onnx``.

Run from the repository root: ``.venv/bin/python docs/examples/brevitas_mlp.py [OUT_DIR]`` (default
``build/brevitas-mlp``). Everything is seeded; it takes one to three minutes (most of it the Verilator build).
"""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import brevitas.nn as qnn
from brevitas.export import export_qonnx
from brevitas.quant import Int8WeightPerTensorFixedPoint, Int32Bias, Uint8ActPerTensorFixedPoint

from peforge.sw.from_qonnx import dequantize_input, from_qonnx, run_qonnx

warnings.filterwarnings("ignore")
out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/brevitas-mlp")
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

# 1. data: 8x8 digits, pixels 0..16 scaled to [0, 1]
x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.2, random_state=0, stratify=y)

# 2. a Brevitas MLP 64-32-10 with power-of-two scales (the FINN convention), 4-bit weights
model = torch.nn.Sequential(
    qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
    qnn.QuantLinear(64, 32, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4,
                    bias_quant=Int32Bias, return_quant_tensor=True),
    qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
    qnn.QuantLinear(32, 10, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4,
                    bias_quant=Int32Bias))
xt, yt = torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for epoch in range(60):
    for i in range(0, len(xt), 128):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt[i:i + 128]), yt[i:i + 128]).backward()
        opt.step()
model.eval()
with torch.no_grad():
    torch_acc = float((model(torch.tensor(x_test, dtype=torch.float32)).argmax(1).numpy() == y_test).mean())
print(f"Brevitas model: test accuracy {100 * torch_acc:.2f} % ({len(y_test)} images)")

# 3. export to QONNX and compile
onnx_path = out / "mlp.onnx"
export_qonnx(model, torch.zeros(1, 64), str(onnx_path))
peforge = [sys.executable, "-m", "peforge.cli"]


def run(*args):
    print("$ peforge " + " ".join(map(str, args)))
    done = subprocess.run([*peforge, *map(str, args)], capture_output=True, text=True)
    print(done.stdout.rstrip() or done.stderr.rstrip())
    if done.returncode:
        raise SystemExit(done.returncode)


run("compile", onnx_path, "-o", out / "compiled")

# 4. the network's input: the input Quant's integer codes, x_int = x / scale
network = from_qonnx(onnx_path)
codes = network.quantize_input(x_test)
np.save(out / "x.npy", codes)
np.save(out / "labels.npy", y_test)
run("infer", out / "compiled", "--input", out / "x.npy", "--labels", out / "labels.npy", "--rtl",
    "--output", out / "logits.npy")

# 5. the same images through qonnx's executor: logits x output scale == execute_onnx, exactly
reference = run_qonnx(onnx_path, dequantize_input(network, codes, None).reshape(len(codes), 64))
logits = np.load(out / "logits.npy")
ours = (logits * network.layers[-1].out_scale).astype(np.float32)
print(f"RTL logits x {network.layers[-1].out_scale:g} == execute_onnx on {int(np.all(ours == reference, axis=1).sum())}"
      f"/{len(codes)} images")
run("export", out / "compiled", "-o", out / "roundtrip.onnx")
