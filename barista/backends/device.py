"""``--backend device``: the whole training iteration as a device program, run on its model.

:class:`DeviceSolver` is Caffe's SGD solver whose iteration runs on the device
(:mod:`barista_hw.device`): the host runs the data layers, sends the batch, reads the
logits, runs SoftmaxWithLoss on them and sends their gradient back; forward, backward
and the SGD update happen on the device, on the device's integers. The host keeps
Caffe's learning-rate policy and sends each iteration's rates.

Test passes (and the final loss) run the program's forward part on the device, the
test batch in chunks of the program's batch, with the statistics left as they were; a
test net whose layers differ from the device's, one with host layers between segments
(whose phase may change what they do), or a test before the first iteration (the
exponents are not chosen yet) runs on the host in float32 with the device's operand
weights. Snapshots read the master weights and the momentum back into
Caffe's ``.caffemodel`` and ``.solverstate``; the resume record carries the device's
persistent integers and scale table, so a resumed run is bit-identical.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from barista_base.errors import InputError
from barista_hw.config import AcceleratorConfig
from barista_hw.device.layers import Conv
from barista_hw.device.machine import Machine
from barista_hw.device.report import iteration_cost
from barista_hw.device.scaling import probe_frac
from barista_hw.device.traffic import Counts
from barista_hw.numfmt import Rounding
from caffe_bridge.net import Net
from caffe_bridge.solvers.params import learning_rate, read_solver_param
from caffe_bridge.solvers.updates import SGDSolver

from ..device_net import DeviceNet, compile_device
from ..manifest import AcceleratorFiles

MASTER_HEADROOM = 8  # bits above the initial peak the 32-bit masters keep for growth (512x+)
ZERO_MASTER_FRAC = 24  # a zero-initialised master (a bias): values up to 128
PROBE_PASSES = 12  # at most this many probe passes choose the first exponents


def quantize(x: np.ndarray, frac: int, bits: int) -> np.ndarray:
    """``x`` to ``bits``-bit integers at ``frac``, nearest-even, saturating (the host's
    conversion of what it sends)."""
    lim = 1 << (bits - 1)
    q = np.rint(np.asarray(x, dtype=np.float64) * 2.0**frac)
    return np.clip(q, -lim, lim - 1).astype(np.int64)


def peak(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


class _Host:
    """The host's end of the link during one run of the program: it sends the inputs, the
    logits' gradient, and what its layers between device segments compute."""

    def __init__(self, solver: DeviceSolver) -> None:
        self.s = solver
        self.loss = math.nan
        self.ran: set[tuple[int, bool]] = set()  # (layer, backward) run this iteration

    def send(self, name: str) -> tuple[np.ndarray, int]:
        net, bits, dn = self.s.net, self.s.bits, self.s.dnet
        if name.startswith("raw:"):  # the images as they were read, before their mean
            blob = name.removeprefix("raw:")
            k = dn.wire8[blob]
            return np.rint(net.blobs[blob].data * 2.0**k + _mean(dn, blob)).astype(np.int64), k
        if name in dn.host_layers:
            self._run_layer(dn.host_layers[name], backward=name.startswith("d:"))
        blob = net.blobs[name.removeprefix("d:")]
        values = blob.diff if name.startswith("d:") else blob.data
        frac = dn.wire8.get(name, probe_frac(peak(values), bits))
        return quantize(values, frac, bits), frac

    def receive(self, name: str, q: np.ndarray, frac: int) -> None:
        dn, net = self.s.dnet, self.s.net
        blob = net.blobs[name.removeprefix("d:")]
        target = blob.diff if name.startswith("d:") else blob.data
        target[...] = (q * 2.0**-frac).reshape(target.shape)
        if name == dn.output:  # the logits: the loss, and the gradient to send back
            self.loss = net.forward_from_to(dn.loss, len(net.layers) - 1)
            blob.diff[...] = 0
            net.backward_from_to(len(net.layers) - 1, dn.loss)

    def _run_layer(self, index: int, *, backward: bool) -> None:
        if (index, backward) not in self.ran:
            self.ran.add((index, backward))
            (self.s.net.backward_layer if backward else self.s.net.forward_layer)(index)


class ForwardHost(_Host):
    """The host's end during a forward pass outside training: it keeps the logits."""

    def __init__(self, solver: DeviceSolver) -> None:
        super().__init__(solver)
        self.logits: np.ndarray | None = None

    def receive(self, name: str, q: np.ndarray, frac: int) -> None:
        if name == self.s.dnet.output:
            self.logits = q * 2.0**-frac
        else:
            super().receive(name, q, frac)


class DeviceSolver(SGDSolver):
    """Caffe's SGD solver with the iteration on the device (module docstring)."""

    def __init__(
        self,
        param: str | os.PathLike[str],
        *,
        accelerator: AcceleratorConfig | AcceleratorFiles | None = None,
        rounding: Rounding | str = Rounding.NEAREST_EVEN,
        target: str | None = None,
        weights: Sequence[str] = (),
        max_iter: int | None = None,
        random_seed: int | None = None,
        log: Callable[[str], None] | None = None,
        preload: bool = False,
        rtl_top: bool = False,
    ) -> None:
        _check_solver(param)
        if rtl_top and preload:
            raise InputError("--preload: the device top runs no FETCH (no preloaded dataset)")
        super().__init__(
            param, weights=weights, max_iter=max_iter, random_seed=random_seed, log=log
        )
        if isinstance(accelerator, AcceleratorFiles):
            accelerator = accelerator.config
        self.rounding = Rounding.parse(rounding) if isinstance(rounding, str) else rounding
        if rtl_top:  # imported here: the RTL's decode pulls in Amaranth
            from ..device_top import compile_for_top

            dc = compile_for_top(self.net, accelerator, target=target, rounding=self.rounding)
        elif accelerator is None:
            raise InputError("the device backend needs an accelerator")
        else:
            dc = compile_device(
                self.net, accelerator, target=target, rounding=self.rounding, preload=preload
            )
        self.config, self.dnet, self.compiled = dc.config, dc.net, dc.compiled
        self.bits = dc.config.accelerator.engine.fmt.width
        self.machine = Machine(self.compiled.program, self.config)
        self.counts: Counts | None = None
        self._probed = False
        self.preloaded = sorted(self.dnet.inputs) if preload else []
        for blob in self.preloaded:  # the datasets, once: records as stored, a byte a value
            images, _ = self.net.layers[self.dnet.sources[blob]].records()
            self.machine.write(f"set:{blob}", images, self.dnet.wire8[blob])
        self.upload()

    # -- weights between the net and the device ------------------------------------------
    def _params(self) -> list[tuple[str, int]]:
        """(device tensor suffix, learnable-param index) of every weight and bias."""
        out = []
        for layer in self.dnet.layers:
            if isinstance(layer, Conv):
                idx = self.dnet.params[layer.name]
                out.append((f":{layer.name}", idx[0]))
                if layer.bias:
                    out.append((f"b:{layer.name}", idx[1]))
        return out

    def upload(self) -> None:
        """The net's weights and the solver's history onto the device (setup, or a resume
        from floats): 32-bit masters and momentum, operand copies in the format."""
        for blob in self.dnet.means:  # in the input's units: (x - mean) * 2**-k
            mean = _mean(self.dnet, blob) * 2.0 ** -self.dnet.wire8[blob]
            frac = probe_frac(peak(mean), self.bits)
            self.machine.write(f"mean:{blob}", quantize(mean[None], frac, self.bits), frac)
        params = self.net.learnable_params
        for suffix, i in self._params():
            w = params[i].data.reshape(-1)
            p = peak(w)
            frac_m = probe_frac(p, 32) - MASTER_HEADROOM if p else ZERO_MASTER_FRAC
            shape = self.machine.tensor(f"m{suffix}").shape
            self.machine.write(f"m{suffix}", quantize(w, frac_m, 32).reshape(shape), frac_m)
            h = self.history[i].reshape(shape)
            self.machine.write(f"v{suffix}", quantize(h, frac_m, 32), frac_m)
            frac_w = probe_frac(p, self.bits)
            self.machine.write(f"w{suffix}", quantize(w, frac_w, self.bits).reshape(shape), frac_w)
        self.download(masters=False)

    def download(self, *, masters: bool) -> None:
        """The device's weights into the net (``masters``: the 32-bit masters and the
        momentum into the history, else the operand copies the GEMMs read). Between
        iterations the net holds the operand copies, so the host's test passes and anyone
        reading the net see the weights the device computes with."""
        params = self.net.learnable_params
        m = self.machine
        for suffix, i in self._params():
            name = f"m{suffix}" if masters else f"w{suffix}"
            values = m.tensor(name) * 2.0 ** -m.scales.stored(name)
            params[i].data[...] = values.reshape(params[i].data.shape)
            if masters:
                v = m.tensor(f"v{suffix}") * 2.0 ** -m.scales.stored(f"v{suffix}")
                self.history[i][...] = v.reshape(self.history[i].shape)

    # -- one iteration --------------------------------------------------------------------
    def scalars(self) -> dict[str, float]:
        """The host scalars the program reads this iteration: momentum, rates, decays."""
        rate, _ = learning_rate(self.param, self.iter, self.current_step)
        decay = float(self.param.weight_decay)
        out = {"momentum": float(self.param.momentum)}
        for layer in self.dnet.layers:
            if isinstance(layer, Conv):
                for p, mult in (("w", layer.weight), ("b", layer.bias_param)):
                    out[f"lr:{p}:{layer.name}"] = float(rate) * mult.lr_mult
                    out[f"decay:{p}:{layer.name}"] = decay * mult.decay_mult
        for blob in self.preloaded:  # the batch the data layer read last starts here
            data = self.net.layers[self.dnet.sources[blob]]
            out[f"record:{blob}"] = float((data.position - self.dnet.batch) % data.entries)
        return out

    def _forward_backward(self) -> np.float32:
        self.net.forward_from_to(0, self.dnet.first - 1)
        scalars = self.scalars()
        if not self._probed:
            self._probe(scalars)
        host = _Host(self)
        self._iterate(host, scalars)
        loss = np.float32(host.loss)
        if not np.isfinite(loss):
            raise self._diverged(loss)
        return loss

    def _iterate(self, host: _Host, scalars: dict[str, float]) -> None:
        """Run the iteration (on the model) with ``host`` at the link's other end."""
        self.counts = self.machine.run(host, scalars, iteration=self.iter)

    def close(self) -> None:
        """Release what runs the device (the model: nothing)."""

    def _forward_pass(self, net: Net) -> None:
        """A test batch or the final loss with the device's arithmetic: the batch in chunks
        of the program's batch through the program's forward part, the logits into
        ``net``, its layers after them on the host. A net whose layers between its data
        and its logits differ from the device's runs on the host, in float32, and so does
        any net before the first iteration has chosen the device's exponents."""
        span = self._device_span(net) if self._probed else None
        if span is None:
            net.forward()
            return
        first, after = span
        net.forward_from_to(0, first - 1)
        dn, batch = self.dnet, self.dnet.batch
        n = net.blobs[next(iter(dn.inputs))].shape[0]
        logits = []
        for start in range(0, n, batch):
            for blob in dn.inputs:  # a last chunk short of the batch is padded with zeros
                chunk = net.blobs[blob].data[start : start + batch]
                target = self.net.blobs[blob].data
                target[: len(chunk)] = chunk
                target[len(chunk) :] = 0
            host = ForwardHost(self)
            self.machine.forward(host, self.scalars(), iteration=self.iter)
            assert host.logits is not None  # the program sends its output to the host
            logits.append(host.logits[: min(batch, n - start)])
        out = net.blobs[dn.output].data
        out[...] = np.concatenate(logits).reshape(out.shape)
        net.forward_from_to(after, len(net.layers) - 1)

    def _device_span(self, net: Net) -> tuple[int, int] | None:
        """In ``net``: the index of the device's first layer and of the layer after the
        one computing the logits, if its layers there are the training net's, on inputs
        of the same shapes, with no host layer (whose phase may change what it does)."""
        train = self.net
        names = [train.layer_names[i] for i in range(self.dnet.first, self.dnet.loss)]
        if self.dnet.host_layers or names[0] not in net.layer_names:
            return None
        first = net.layer_names.index(names[0])
        span = range(first, first + len(names))
        same = [net.layer_names[i] for i in span if i < len(net.layers)] == names and all(
            net.layers[i].type_name == train.layers[j].type_name
            for i, j in zip(span, range(self.dnet.first, self.dnet.loss), strict=True)
        )
        shapes = all(
            blob in net.blobs and tuple(net.blobs[blob].shape[1:]) == shape
            for blob, shape in self.dnet.inputs.items()
        )
        return (first, first + len(names)) if same and shapes else None

    def _probe(self, scalars: dict[str, float]) -> None:
        """Choose the first exponents: the iteration without its update, until no exponent
        changes (at most :data:`PROBE_PASSES` passes)."""
        n = 0
        while n < PROBE_PASSES:
            n += 1
            if not self.machine.probe(_Host(self), scalars, iteration=self.iter):
                break
        self.log(f"Device: exponents chosen by {n} probe pass{'es' if n > 1 else ''}")
        self._probed = True

    def apply_update(self) -> None:
        """The device applied the update in its program; the host advances the rate and
        takes the updated operand weights into the net (:meth:`_updated`)."""
        self._updated()
        rate = self.get_learning_rate()
        if self.param.display and self.iter % self.param.display == 0:
            self.log(f"Iteration {self.iter}, lr = {float(rate):.6g}")

    def _updated(self) -> None:
        """An iteration's update is on the device: its operand weights into the net."""
        self.download(masters=False)

    # -- snapshots -------------------------------------------------------------------------
    def snapshot(self) -> str:
        """Caffe's files carry the masters and the momentum; the net then goes back to the
        operand copies."""
        self.download(masters=True)
        try:
            return super().snapshot()
        finally:
            self.download(masters=False)

    def runtime_state(self) -> dict[str, Any]:
        state = super().runtime_state()
        m = self.machine
        persistent = [t["name"] for t in m.program.tensors if t["role"] in PERSISTENT]
        state["device"] = {
            "scales": m.scales.state_dict(),
            "probed": self._probed,
            "tensors": {n: _encode(m.tensor(n)) for n in persistent},
        }
        return state

    def load_runtime_state(self, record: dict[str, Any]) -> None:
        record = dict(record)
        device = record.pop("device", None)
        super().load_runtime_state(record)
        if device is None:
            return
        m = self.machine
        m.scales.load_state_dict(device["scales"])
        for name, data in device["tensors"].items():
            m.tensor(name)[...] = _decode(data).reshape(m.tensor(name).shape)
        self._probed = bool(device["probed"])
        self._device_restored = True
        self.download(masters=False)

    def restore(self, path: str | os.PathLike[str]) -> None:
        self._device_restored = False
        super().restore(path)
        if not self._device_restored:  # a Caffe solver state: the floats are all there is
            self.upload()

    # -- reports ---------------------------------------------------------------------------
    def device_report(self) -> str:
        """Traffic, time and energy of the last iteration (the counts taken running it)."""
        if self.counts is None:
            return "Device: no iteration ran"
        cost = iteration_cost(self.compiled.program, self.config, self.counts)
        return "Device " + cost.summary()


PERSISTENT = ("weight", "master", "momentum")


def _mean(dn: DeviceNet, blob: str) -> np.ndarray:
    mean = dn.means[blob]
    if mean is None:
        raise InputError(f"input {blob!r}: its data layer's mean image is unknown (no data)")
    return mean


def _encode(q: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(q, dtype="<i8").tobytes()).decode()


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<i8").copy()


def _check_solver(param: str | os.PathLike[str]) -> None:
    p, src = read_solver_param(param)
    if p.type != "SGD":
        raise src.error("type", f"the device runs SGD only, not {p.type}")
    if p.iter_size != 1:
        raise src.error("iter_size", "the device runs iter_size 1 only")
    if p.clip_gradients >= 0:
        raise src.error("clip_gradients", "the device does not clip gradients")
    if p.regularization_type != "L2":
        raise src.error("regularization_type", "the device applies L2 weight decay only")
