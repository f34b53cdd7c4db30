"""``convert``: every Conv2d (stride, padding, dilation, groups, bias) and Linear goes onto
the backend with torch's own results (cpu backend), the rest stays in torch and is listed,
and a ResNet-style model trains on golden."""

from __future__ import annotations

import numpy as np
import pytest

from barista_base.errors import InputError
from barista_hw.config import Pass

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: pip install 'barista[torch]'"
)
nn = torch.nn

from barista.torch import BaristaConv2d, BaristaLinear, KeptLayer, convert  # noqa: E402


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"stride": 2, "padding": 1},
        {"stride": (2, 1), "padding": (2, 0), "dilation": (1, 2)},
        {"groups": 2, "padding": 1, "bias": False},
        {"kernel_size": 1, "groups": 4},
    ],
)
def test_conv2d_matches_torch_on_cpu_backend(options: dict) -> None:
    torch.manual_seed(0)
    kwargs = {"kernel_size": 3, **options}
    ref = nn.Conv2d(4, 8, **kwargs)
    ours, kept = convert(nn.Sequential(nn.Conv2d(4, 8, **kwargs)), "cpu")
    ours[0].load_state_dict(ref.state_dict())
    assert isinstance(ours[0], BaristaConv2d) and kept == []
    x = torch.randn(3, 4, 9, 10)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    ys = [ref(xs[0]), ours(xs[1])]
    assert ys[0].shape == ys[1].shape
    dy = torch.randn(ys[0].shape)
    for y in ys:
        y.backward(dy)
    torch.testing.assert_close(ys[1], ys[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[0].weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-4)
    if ref.bias is not None:
        torch.testing.assert_close(ours[0].bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-4)


def test_linear_over_leading_axes_matches_torch() -> None:
    torch.manual_seed(1)
    ref = nn.Linear(6, 5)
    ours, _ = convert(nn.Sequential(nn.Linear(6, 5)), "cpu")
    ours[0].load_state_dict(ref.state_dict())
    assert isinstance(ours[0], BaristaLinear)
    x = torch.randn(2, 3, 6)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    ys = [ref(xs[0]), ours(xs[1])]
    for y in ys:
        y.square().sum().backward()
    torch.testing.assert_close(ys[1], ys[0])
    torch.testing.assert_close(xs[1].grad, xs[0].grad)
    torch.testing.assert_close(ours[0].weight.grad, ref.weight.grad)


class Block(nn.Module):
    """A ResNet basic block with a strided, grouped 3x3 and a 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Block(8, 16, stride=2, groups=2)
        # "same" padding is not Caffe's: this one stays in torch.
        self.same = nn.Conv2d(16, 16, 3, padding="same")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.pool(self.same(self.block(self.stem(x)))).flatten(1))


def test_resnet_block_converts_and_trains_on_golden() -> None:
    torch.manual_seed(2)
    model, kept = convert(SmallResNet(), "golden", format="fx16", rounding="stochastic")
    converted = {
        n for n, m in model.named_modules() if isinstance(m, BaristaConv2d | BaristaLinear)
    }
    assert converted == {"stem.0", "block.conv1", "block.conv2", "block.shortcut.0", "fc"}
    assert [k.name for k in kept] == [
        "stem.1",
        "stem.2",
        "block.bn1",
        "block.bn2",
        "block.shortcut.1",
        "same",
        "pool",
    ]
    assert all(isinstance(k, KeptLayer) for k in kept)
    assert kept[0].module.startswith("BatchNorm2d(") and kept[5].module.startswith("Conv2d(")
    backend = model.fc.backend
    assert all(m.backend is backend for n, m in model.named_modules() if n in converted)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    before = model.block.conv1.weight.detach().clone()
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert not torch.equal(model.block.conv1.weight, before)  # the grouped conv learnt
    # Each converted layer ran its passes on the backend, under its own name; the stem's
    # input needs no gradient, so its backward-data pass never ran.
    calls = set(backend.last_call)
    for kind in (Pass.FORWARD, Pass.WEIGHT_GRAD):
        assert {f"{n}/{kind.value}" for n in converted} <= calls
    backward = Pass.BACKWARD_DATA.value
    assert f"stem.0/{backward}" not in calls and f"block.conv1/{backward}" in calls
    # In eval mode the layers run on the test backend: the training state stays as it was.
    state = {k: dict(v) for k, v in backend.last_call.items()}
    scales = backend.state_dict()
    model.eval()
    with torch.no_grad():
        model(x)
    assert backend.last_call == state and backend.state_dict() == scales
    test = model.fc.test_backend
    assert test is not backend and f"fc/{Pass.FORWARD.value}" in test.last_call


def test_bad_options_name_the_problem() -> None:
    with pytest.raises(InputError, match="unknown backend"):
        convert(nn.Sequential(nn.Linear(2, 2)), "nope")
    with pytest.raises(InputError, match="format='fx99'"):
        convert(nn.Sequential(nn.Linear(2, 2)), "golden", format="fx99")
    with pytest.raises(InputError, match="wrap it"):
        convert(nn.Linear(2, 2), "cpu")
