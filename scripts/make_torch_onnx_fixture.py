"""Write the torch-exported ONNX fixture the import tests read when PyTorch is not installed.

    python scripts/make_torch_onnx_fixture.py            # needs torch (pip install torch==2.13.0) and onnx

A small CNN built in PyTorch (conv -> ReLU -> padded avg-pool -> conv -> Tanh -> max-pool -> view ->
linear -> ReLU -> linear), exported by torch.onnx's TorchScript exporter (``dynamo=False``, which needs
only the onnx package) with a dynamic batch, and PyTorch's own logits for 8 fixed inputs. The
``x.view(x.size(0), -1)`` makes the exporter emit the Shape -> Gather -> Unsqueeze -> Concat -> Reshape
pattern that the importer must read as a flatten.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "interop" / "data"


def main():
    import torch
    from torch import nn

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from xcnn.io import atomic_save_npz, atomic_write_bytes

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 5, padding=2)
            self.pool1 = nn.AvgPool2d(3, stride=2, padding=1)  # count_include_pad=True, as xcnn
            self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
            self.fc1 = nn.Linear(8 * 7 * 7, 16)
            self.fc2 = nn.Linear(16, 10)

        def forward(self, x):
            x = self.pool1(torch.relu(self.conv1(x)))
            x = torch.max_pool2d(torch.tanh(self.conv2(x)), 2)
            x = x.view(x.size(0), -1)
            return self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    net = SmallCNN().eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), buf, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (8, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    atomic_write_bytes(OUT / "torch_small_cnn.onnx", buf.getvalue())
    atomic_save_npz(OUT / "torch_small_cnn_logits.npz", {"x": x, "logits": logits,
                                                         "torch_version": np.array(torch.__version__)})
    print(f"wrote {OUT / 'torch_small_cnn.onnx'} ({len(buf.getvalue()):,} bytes) and its logits "
          f"(torch {torch.__version__})")


if __name__ == "__main__":
    main()
