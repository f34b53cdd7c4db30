"""Train a small PyTorch CNN on the digits with Barista's hardware arithmetic.

    python examples/pytorch_digits.py                      # backend golden (bit-exact model)
    python examples/pytorch_digits.py --backend rtl        # the Verilated accelerator
    python examples/pytorch_digits.py --accelerator rtl_out/smallcnn   # golden on rtl's design

The model is plain PyTorch; ``barista.torch.convert`` puts every Conv2d and Linear onto
the chosen backend (their forward, backward-data and weight-gradient GEMMs), the rest
(pooling, ReLU) stays in torch, and the torch optimizer and loop are unchanged. For
``rtl`` the accelerator is generated for this model first (``barista.torch.generate``,
the same design ``barista generate`` makes for the equivalent prototxt) and the training
runs on its Verilog, with the same bits as ``golden`` on that accelerator (the last
command: the same losses and accuracy). Needs
``pip install 'barista[torch]'`` (the CPU build of torch).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from barista.manifest import write_rtl_dir
from barista.torch import convert, generate
from caffe_bridge.datasets import load_digits_28


class SmallCNN(nn.Module):
    """conv 5x5 (8) - pool - conv 5x5 (16, two groups, stride 2) - fc 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 5, stride=2, groups=2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv2(self.pool1(self.conv1(x))))
        return self.fc(x.flatten(1))


def main(argv: list[str] | None = None) -> float:
    """Train, print the loss now and then and the test accuracy; return the accuracy."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="golden", choices=("cpu", "golden", "rtl"))
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--format", default="fx16", help="number format (golden; rtl: generated)")
    p.add_argument("--out", default="rtl_out/smallcnn", help="where rtl's accelerator goes")
    p.add_argument(
        "--accelerator", help="an accelerator directory to run on (rtl: instead of generating)"
    )
    args = p.parse_args(argv)

    images, labels = load_digits_28()
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    y = torch.from_numpy(labels)
    split = len(x) * 4 // 5
    torch.manual_seed(0)
    model = SmallCNN()
    options: dict = {"rounding": "stochastic"}
    if args.accelerator and args.backend != "cpu":
        options["accelerator"] = args.accelerator
    elif args.backend == "rtl":
        shape = (args.batch, 1, 28, 28)
        design = generate(model, shape, target="ulx3s-45f", fmt=args.format, name="SmallCNN")
        write_rtl_dir(design, args.out)
        options["accelerator"] = args.out
        print(design.summary, end="")
    elif args.backend == "golden":
        options["format"] = args.format
    else:
        options = {}
    model, kept = convert(model, args.backend, **options)
    print("stayed in torch:", ", ".join(f"{k.name} ({k.module})" for k in kept))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for it in range(args.iterations):
        idx = torch.from_numpy(rng.choice(split, args.batch, replace=False))
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if it % 50 == 0 or it == args.iterations - 1:
            print(f"iteration {it}, loss = {loss.item():.4f}")
    model.eval()  # the test passes run on a test backend, as Caffe's test nets do
    with torch.no_grad():
        correct = sum(
            int((model(x[i : i + 64]).argmax(1) == y[i : i + 64]).sum())
            for i in range(split, len(x), 64)
        )
    accuracy = correct / (len(x) - split)
    print(f"test accuracy {accuracy:.2%} ({args.backend})")
    backend = model.conv1.backend
    if args.backend == "rtl":
        print(backend.cycle_report())
    backend.close()
    return accuracy


if __name__ == "__main__":
    main()
