"""``backend="rtl"`` in PyTorch: LeNet on the Verilated accelerator generated for it gives
the bits of ``backend="golden"`` on the same accelerator (small batch, two iterations)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: pip install 'barista[torch]'"
)

from barista.torch import CaffeSGD, caffe_softmax_loss, convert  # noqa: E402


def _train(lenet: SimpleNamespace, backend: str, accelerator: Path) -> tuple[list, dict]:
    """Two iterations from the same weights and data: the logits and the final weights."""
    torch.manual_seed(0)
    model, _ = convert(lenet.TorchLeNet(), backend, accelerator=accelerator, rounding="stochastic")
    opt = CaffeSGD(model.parameters(), lr=0.01, momentum=0.9)
    x, labels = torch.rand(2, 1, 28, 28), torch.tensor([3, 8])
    logits = []
    for _ in range(2):
        opt.zero_grad()
        out = model(x)
        caffe_softmax_loss(out, labels).backward()
        opt.step()
        logits.append(out.detach())
    if backend == "rtl":
        report = model.conv1.backend.cycle_report()
        assert {(r["layer"], r["source"]) for r in report.rows()} == {
            (name, "rtl") for name in ("conv1", "conv2", "ip1", "ip2")
        }
    model.conv1.backend.close()
    return logits, {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.slow
def test_rtl_bit_identical_to_golden(lenet: SimpleNamespace, lenet_rtl: Path) -> None:
    rtl, golden = (_train(lenet, b, lenet_rtl) for b in ("rtl", "golden"))
    for got, want in zip(rtl[0], golden[0], strict=True):
        assert torch.equal(got, want)
    assert rtl[1].keys() == golden[1].keys()
    for name, value in rtl[1].items():
        assert torch.equal(value, golden[1][name]), name
