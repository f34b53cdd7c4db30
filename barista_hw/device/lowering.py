"""Each layer's forward, backward and update as device instructions.

Tensor names: a blob's activations by the blob's name, its gradient ``d:<blob>``; a
layer's weights ``w:<layer>`` (the operand copy the GEMMs read), ``m:<layer>`` (the
32-bit master), ``v:<layer>`` (momentum), ``g:<layer>`` (gradient), and the same with
``b`` for the bias (``wb:``, ``mb:``, ``vb:``, ``gb:``); a max pooling's argmax mask
``mask:<layer>``; a convolution's col2im accumulator ``acc:<blob>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from barista_hw.numfmt import Rounding

from .emit import Builder
from .gemm_lowering import GemmPass, Operand, emit_gemm
from .isa import NONE, PREFETCH, WIRE8, Op, View
from .layers import Conv, HostLayer, Layer, Pool, Relu
from .memory import DeviceConfig, packed_bytes
from .vector import VecOp, mask_bits, scalar_param

WIDE_BITS = 32  # master weights, momentum, col2im accumulators


class Lowering:
    """Emits the instructions of one training iteration into a :class:`Builder`."""

    def __init__(
        self,
        b: Builder,
        config: DeviceConfig,
        batch: int,
        rounding: Rounding,
        wire8: frozenset[str] = frozenset(),
    ) -> None:
        self.b = b
        self.wire8 = wire8
        # In-place ReLUs right after a Convolution/InnerProduct on its top, by blob: the
        # GEMM's epilogue applies them (set by :meth:`plan_fusion`).
        self.fused: dict[str, Relu] = {}
        self.config = config
        self.batch = batch
        self.rounding = rounding
        self.bits = config.accelerator.engine.fmt.width
        self.v_elements = config.scratchpads.v_depth * config.scratchpads.vector_lanes
        self.shapes: dict[str, tuple[int, ...]] = {}  # blob -> one image's shape
        self.needs_grad: set[str] = set()

    def plan_fusion(self, layers: Sequence[Layer]) -> None:
        """Find the ReLUs the GEMM epilogues apply: in place, right after a Conv on its top."""
        for before, layer in zip(layers, layers[1:], strict=False):
            if (
                isinstance(before, Conv)
                and isinstance(layer, Relu)
                and layer.bottom == layer.top == before.top
            ):
                self.fused[layer.top] = layer

    # -- tensors ----------------------------------------------------------------------
    def activation(
        self, blob: str, shape: tuple[int, ...], role: str = "activation", bits: int | None = None
    ) -> int:
        self.shapes[blob] = tuple(shape)
        self.b.tensor(blob, (self.batch, *shape), bits or self.bits, role)
        return self.b.index[blob]

    def _t(self, name: str) -> dict:
        return self.b.program.tensors[self.b.index[name]]

    def _grad(
        self, blob: str, bits: int | None = None, prefix: str = "d", role: str = "gradient"
    ) -> str:
        name = f"{prefix}:{blob}"
        self.b.tensor(name, (self.batch, *self.shapes[blob]), bits or self.bits, role)
        return name

    def _param(self, layer: str, shape: tuple[int, ...], bias: bool) -> None:
        p = "b" if bias else ""
        for prefix, bits, role in (
            (f"w{p}", self.bits, "weight"),
            (f"m{p}", WIDE_BITS, "master"),
            (f"v{p}", WIDE_BITS, "momentum"),
            (f"g{p}", self.bits, "weight_grad"),
        ):
            self.b.tensor(f"{prefix}:{layer}", shape, bits, role)

    # -- the link -----------------------------------------------------------------------
    def batch_input(
        self, blob: str, shape: tuple[int, ...], *, mean: bool = False, records: int = 0
    ) -> None:
        """The iteration's input batch ``blob`` (one image's ``shape``), double-buffered: it
        arrives during the previous iteration; one in ``wire8`` comes as a byte a value.
        With ``mean``, the host sends the images as they are (``raw:<blob>``, kept a byte a
        value) and the device subtracts the data layer's mean image, a constant
        ``mean:<blob>`` written once. With ``records``, no image is sent: the host preloads
        that many (a dataset, ``set:<blob>``, a byte a value) and each iteration FETCHes its
        batch from them, from the record the host names in the scalar ``record:<blob>``."""
        sent = f"raw:{blob}" if mean else blob
        raw_bits = 8 if mean else None  # the images as read, a byte a value, stay bytes
        if records:
            self.activation(sent, shape, bits=raw_bits)
            dataset = f"set:{blob}"
            self.b.tensor(dataset, (records, *shape), 8, "dataset")
            self.b.mark(f"fetch/{blob}")
            self.b.emit(
                Op.FETCH,
                reads=[dataset],
                writes=[sent],
                tensor=self.b.index[sent],
                source=self.b.index[dataset],
                images=self.batch,
                scalar=self.b.scalar(f"record:{blob}"),
                records=records,
            )
        else:
            self.activation(sent, shape, role="input", bits=raw_bits)
            self.b.mark(f"link/{blob}")
            sub = (WIRE8 if blob in self.wire8 else 0) | PREFETCH
            self._link(Op.HOST_IN, sent, writes=True, sub=sub)
        if mean:
            self.activation(blob, shape)
            self.b.tensor(f"mean:{blob}", (1, *shape), self.bits, "constant")
            self.b.mark(f"{blob}/mean")
            self._vec(VecOp.MEAN_SUB, sent, blob, src2=f"mean:{blob}")

    def host_in(self, name: str, *, like: str | None = None) -> None:
        """The host sends tensor ``name`` (``like``: it has that blob's shape)."""
        if like is not None:
            self._grad(like)
        self.b.mark(f"link/{name}")
        self._link(Op.HOST_IN, name, writes=True)

    def host_out(self, name: str) -> None:
        self.b.mark(f"link/{name}")
        self._link(Op.HOST_OUT, name, writes=False)

    def _link(self, op: Op, name: str, *, writes: bool, sub: int = 0) -> None:
        """A tensor over the link: its values packed at their width, as in DRAM (a byte
        each with ``WIRE8``)."""
        t = self._t(name)
        n = math.prod(t["shape"])
        self.b.emit(
            op,
            sub,
            reads=[] if writes else [name],
            writes=[name] if writes else [],
            tensor=self.b.index[name],
            i0=0,
            images=self.batch,
            dram=t["dram"],
            bytes=n if sub & WIRE8 else packed_bytes(n, t["bits"]),
        )

    # -- layers -----------------------------------------------------------------------
    def forward(self, layer: Layer) -> None:
        self.b.mark(f"{layer.name}/forward")
        if isinstance(layer, HostLayer):
            for blob in layer.bottoms:
                self.host_out(blob)
            for blob, shape in zip(layer.tops, layer.top_shapes, strict=True):
                self.activation(blob, shape)
                self.host_in(blob)
                if any(b in self.needs_grad for b in layer.bottoms):
                    self.needs_grad.add(blob)
            return
        if isinstance(layer, Conv):
            self._conv_forward(layer)
        elif isinstance(layer, Relu) and self.fused.get(layer.top) is layer:
            pass  # applied by the layer before it, in its GEMM's epilogue
        elif isinstance(layer, Relu):
            self.activation(layer.top, layer.shape)
            slope = scalar_param(layer.negative_slope)
            self._vec_images(VecOp.RELU, layer.bottom, layer.top, layer.shape, param=slope)
        else:
            self._pool_forward(layer)
        if isinstance(layer, Conv) or layer.bottom in self.needs_grad:
            self.needs_grad.add(layer.top)

    def backward(self, layer: Layer) -> None:
        self.b.mark(f"{layer.name}/backward")
        if isinstance(layer, HostLayer):
            for blob in layer.tops:
                self.host_out(f"d:{blob}")
            for blob in layer.bottoms:
                if blob in self.needs_grad:
                    self._grad(blob)
                    self.host_in(f"d:{blob}")
            return
        if isinstance(layer, Conv):
            self._conv_backward(layer)
        elif layer.bottom in self.needs_grad:
            dx = self._grad(layer.bottom)
            if isinstance(layer, Relu):
                slope = scalar_param(layer.negative_slope)
                self._vec_images(
                    VecOp.RELU_BACK,
                    f"d:{layer.top}",
                    dx,
                    layer.shape,
                    src2=layer.bottom,
                    param=slope,
                )
            else:
                self._pool_backward(layer, dx)

    def update(self, layer: Layer) -> None:
        if not isinstance(layer, Conv):
            return
        self.b.mark(f"{layer.name}/update")
        for p, param in (("", layer.weight), ("b", layer.bias_param)):
            if p and not layer.bias:
                continue
            lr = self.b.scalar(f"lr:{p or 'w'}:{layer.name}")
            self.b.scalar(f"decay:{p or 'w'}:{layer.name}")
            self._vec(
                VecOp.SGD,
                f"g{p}:{layer.name}",
                f"m{p}:{layer.name}",
                src2=f"v{p}:{layer.name}",
                dst2=f"w{p}:{layer.name}",
                param=lr,
            )
            _ = param  # the multipliers reach the device in the host's per-iteration scalars

    # -- convolution and inner product ----------------------------------------------------
    def _conv_forward(self, c: Conv) -> None:
        """The GEMM of each group, with the bias and a ReLU that follows in place
        (:attr:`fused`) applied to each result block before it is stored, or, on a device
        without epilogues on C, by VECs over the stored result."""
        self._param(c.name, (c.num_output, c.k), bias=False)
        if c.bias:
            self._param(c.name, (c.num_output,), bias=True)
        self.activation(c.top, c.out_shape)
        epilogue = ((VecOp.BIAS_ADD, f"wb:{c.name}", 0),) if c.bias else ()
        relu = self.fused.get(c.top)
        if relu is not None:
            epilogue += ((VecOp.RELU, None, scalar_param(relu.negative_slope)),)
        on_c = self.config.scratchpads.epilogues
        self._conv_gemms(c, epilogue if on_c else ())
        if not on_c:
            for op, src2, param in epilogue:
                kw = {"src2": src2} if src2 else {}
                self._vec_images(op, c.top, c.top, c.out_shape, param=param, **kw)

    def _conv_gemms(self, c: Conv, epilogue: tuple) -> None:
        g_m = c.num_output // c.group
        for g in range(c.group):
            self._gemm(
                c,
                "forward",
                self._weights(c, g, transpose=False),
                self._input(c, c.bottom, g, transpose=False),
                self._folded(c.top, c.num_output, c.pixels, row0=g * g_m),
                epilogue,
                m=g_m,
                k=c.k,
                n=self.batch * c.pixels,
            )

    def _conv_backward(self, c: Conv) -> None:
        g_m = c.num_output // c.group
        dy = f"d:{c.top}"
        if c.bias:
            self._bias_grad(c, dy)
        for g in range(c.group):
            wg = self._t(f"g:{c.name}")
            out = Operand(
                f"g:{c.name}",
                View.MATRIX,
                self._matrix(g_m, c.k, c.k, 1, f"g:{c.name}"),
                wg["dram"] + g * g_m * c.k,
            )
            dy_op = self._folded(dy, c.num_output, c.pixels, row0=g * g_m)
            x_t = self._input(c, c.bottom, g, transpose=True)
            self._gemm(
                c, "weight_grad", dy_op, x_t, out, m=g_m, k=c.pixels, n=c.k, images=self.batch
            )
        if not c.backward_data:
            return
        dx = self._grad(c.bottom)
        target = dx
        if c.geom is not None:
            target = self._grad(c.bottom, WIDE_BITS, prefix="acc", role="accumulator")
        for g in range(c.group):
            out = self._input(c, target, g, transpose=False)
            dy_op = self._folded(dy, c.num_output, c.pixels, row0=g * g_m)
            self._gemm(
                c,
                "backward_data",
                self._weights(c, g, transpose=True),
                dy_op,
                out,
                m=c.k,
                k=g_m,
                n=self.batch * c.pixels,
            )
        if c.geom is not None:  # read-and-clear the accumulator into the gradient
            self._vec_images(VecOp.CONVERT, target, dx, c.in_shape, param=1)

    def _bias_grad(self, c: Conv, dy: str) -> None:
        """The bias gradient: one VEC, or one a row of ``vector_lanes`` channels (a
        ``channels`` descriptor) when the vector unit's rings cannot hold a row's
        gradients of an image twice over (the fetch order a whole row needs)."""
        units = self.config.scratchpads
        lanes, ring = units.vector_lanes, units.vec_ring
        if ring is None or 2 * lanes * c.pixels <= ring:
            self._vec(VecOp.BIAS_GRAD, dy, f"gb:{c.name}")
            return
        for c0 in range(0, c.num_output, lanes):
            n = min(lanes, c.num_output - c0)
            desc = self.b.desc(kind="channels", c0=c0, channels=n)
            self._vec(VecOp.BIAS_GRAD, dy, f"gb:{c.name}", desc=desc)

    def _gemm(
        self,
        c: Conv,
        kind: str,
        a: Operand,
        b: Operand,
        out: Operand,
        epilogue: tuple = (),
        **dims: int,
    ) -> None:
        g = GemmPass(c.name, kind, a, b, out, rounding=self.rounding, epilogue=epilogue, **dims)
        emit_gemm(self.b, g, self.config)

    def _weights(self, c: Conv, g: int, *, transpose: bool) -> Operand:
        """Group ``g``'s weights (``num_output/group x k``, row-major), or their transpose."""
        g_m = c.num_output // c.group
        name = f"w:{c.name}"
        t = self._t(name)
        base = t["dram"] + g * g_m * c.k
        if transpose:
            desc = self._matrix(c.k, g_m, 1, c.k, name)
        else:
            desc = self._matrix(g_m, c.k, c.k, 1, name)
        return Operand(name, View.MATRIX, desc, base)

    def _input(self, c: Conv, blob: str, g: int, *, transpose: bool) -> Operand:
        """The layer's input matrix (``k x images*pixels``) of group ``g``: im2col of
        ``blob`` for a convolution, ``blob`` folded for an inner product."""
        t = self._t(blob)
        if c.geom is None:
            desc = self._folded_desc(c.k, 1, blob)
            return Operand(blob, View.FOLDED, desc, t["dram"], transpose=transpose)
        geom = c.geom
        desc = self.b.desc(
            kind="im2col",
            channels=geom.channels,
            height=geom.height,
            width=geom.width,
            kernel=list(geom.kernel),
            stride=list(geom.stride),
            pad=list(geom.pad),
            dilation=list(geom.dilation),
            group=geom.group,
            images=self.batch,
            tensor=self.b.index[blob],
        )
        return Operand(blob, View.IM2COL, desc, t["dram"], group=g, transpose=transpose)

    def _folded(self, blob: str, channels: int, pixels: int, *, row0: int = 0) -> Operand:
        """``blob`` seen as ``channels x images*pixels``; the GEMM's rows start at ``row0``."""
        t = self._t(blob)
        desc = self._folded_desc(channels, pixels, blob)
        return Operand(blob, View.FOLDED, desc, t["dram"], row0=row0)

    # A tile view's descriptor names its tensor: the tensor table gives the DMA the
    # tensor's address and its elements' width.
    def _folded_desc(self, channels: int, pixels: int, tensor: str) -> int:
        index = self.b.index[tensor]
        return self.b.desc(
            kind="folded", channels=channels, pixels=pixels, images=self.batch, tensor=index
        )

    def _matrix(self, rows: int, cols: int, row_stride: int, col_stride: int, tensor: str) -> int:
        return self.b.desc(
            kind="matrix",
            rows=rows,
            cols=cols,
            row_stride=row_stride,
            col_stride=col_stride,
            tensor=self.b.index[tensor],
        )

    # -- pooling ----------------------------------------------------------------------
    def _pool_desc(self, p: Pool) -> int:
        g = p.geom
        return self.b.desc(
            kind="pool",
            method=p.method,
            channels=g.channels,
            height=g.height,
            width=g.width,
            kernel=list(g.kernel),
            stride=list(g.stride),
            pad=list(g.pad),
        )

    def _pool_forward(self, p: Pool) -> None:
        self.activation(p.top, p.out_shape)
        desc = self._pool_desc(p)
        if p.method == "max":
            shape = (self.batch, *p.out_shape)
            self.b.tensor(f"mask:{p.name}", shape, mask_bits(p.geom), "mask")
            self._vec_images(
                VecOp.MAXPOOL, p.bottom, p.top, p.in_shape, dst2=f"mask:{p.name}", desc=desc
            )
        else:
            self._vec_images(VecOp.AVEPOOL, p.bottom, p.top, p.in_shape, desc=desc)

    def _pool_backward(self, p: Pool, dx: str) -> None:
        desc = self._pool_desc(p)
        if p.method == "max":
            self._vec_images(
                VecOp.MAXPOOL_BACK, f"d:{p.top}", dx, p.in_shape, src2=f"mask:{p.name}", desc=desc
            )
        else:
            self._vec_images(VecOp.AVEPOOL_BACK, f"d:{p.top}", dx, p.in_shape, desc=desc)

    # -- the vector unit --------------------------------------------------------------------
    def _vec_images(
        self, op: VecOp, src: str, dst: str, shape: tuple[int, ...], **kw: object
    ) -> None:
        """``op`` over the batch, as many images an instruction as V holds (in and out)."""
        per = max(1, self.v_elements // (2 * math.prod(shape)))
        for i0 in range(0, self.batch, per):
            self._vec(op, src, dst, i0=i0, images=min(per, self.batch - i0), **kw)  # type: ignore[arg-type]

    def _vec(
        self,
        op: VecOp,
        src: str,
        dst: str,
        *,
        src2: str | None = None,
        dst2: str | None = None,
        desc: int = 0xFF,
        i0: int = 0,
        images: int = 0,
        param: int = 0,
    ) -> None:
        ix = self.b.index
        reads = [src] + ([src2] if src2 else [])
        writes = [dst] + ([dst2] if dst2 else [])
        if op is VecOp.CONVERT and param:
            writes.append(src)  # read-and-clear
        self.b.emit(
            Op.VEC,
            int(op),
            reads=reads,
            writes=writes,
            src=ix[src],
            src2=ix[src2] if src2 else NONE,
            dst=ix[dst],
            dst2=ix[dst2] if dst2 else NONE,
            desc=desc,
            rounding=int(self.rounding),
            i0=i0,
            images=images or self.batch,
            seed=self.b.next_seed(),
            param=param,
        )
