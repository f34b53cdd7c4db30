"""The device host link: its gateware (with its UARTs, Amaranth simulator) against the host
class :class:`boards.device_host.DeviceHost` over the serial line, bit by bit, with models
of the memory and of the device's streams; corrupted and lost bytes on the line."""

from __future__ import annotations

import random
from collections import deque

import pytest
from amaranth import ClockDomain, Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw.device.rtl.decode import write_layout
from barista_hw.device.rtl.device import pack_write
from barista_hw.device.rtl.sdram import SdramPort
from boards import device_protocol as D
from boards.device_board import sdram_pins
from boards.device_host import DeviceHost
from boards.device_link import DeviceLink
from boards.host import IdentityMismatch, LinkRejected
from boards.link import add_serial_link
from boards.platforms import get_board
from sim.device_cases import CONFIG

DIV = 4  # cycles per UART bit: the shortest the UART takes
PERIOD = 1e-8
#: A small geometry, so that "no room" answers come quickly.
GEO = D.DeviceGeometry(
    D.beat_words(CONFIG), staging=512, prog_fifo=512, host_in_fifo=32, out_ring=16
)
TENSORS, REGISTERS = 32, 64


async def _ticks(ctx, n: int) -> None:  # noqa: ANN001
    # Not ``tick().repeat(n)``: a background testbench stopped inside it warns at exit.
    for _ in range(n):
        await ctx.tick()


class _Pins(wiring.Component):
    def __init__(self, link: DeviceLink) -> None:
        self.link = link
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "idle": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        add_serial_link(m, self.link, DIV, self)
        return m


class SimBoard:
    """The link in pysim behind a byte port for the host: ``read`` runs the simulation.

    Models: a word memory on ``port``; ``prog`` / ``host_in`` sinks that take a beat
    when ``ready_rate`` says so; ``host_out`` and ``readback`` sources fed by the test.
    ``corrupt``: {request number: byte index} flips that byte's bit 0 on the line;
    ``drop``: response numbers the line loses.
    """

    name = "pysim"

    def __init__(self, corrupt: dict | None = None, drop: set | None = None) -> None:
        ident = D.ident_payload(CONFIG, TENSORS, REGISTERS, GEO)
        self.link = DeviceLink(CONFIG, GEO, ident, DIV)
        self.pins = _Pins(self.link)
        self.to_board: deque[int] = deque()
        self.from_board = bytearray()
        self.memory: dict[int, int] = {}
        self.beats: list[int] = []
        self.host_in: list[int] = []
        self.out_words: deque[int] = deque()
        self.readback_words: deque[int] = deque()
        self.sink_ready = True
        self.corrupt, self.drop = corrupt or {}, drop or set()
        self.requests = self.responses = 0
        self.rng = random.Random(1)
        self.sim = Simulator(self.pins)
        self.sim.add_clock(PERIOD)
        for bench in (self._line_in, self._line_out, self._memory, self._device):
            self.sim.add_testbench(bench, background=True)
        self.now = 0.0
        self.run(10)  # compiles the simulation before a host's timeouts count

    # -- the byte port --------------------------------------------------------------------
    def write(self, frame: bytes) -> None:
        data = bytearray(frame)
        if self.requests in self.corrupt:
            data[self.corrupt[self.requests]] ^= 1
        self.requests += 1
        self.to_board.extend(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, n: int) -> bytes:
        if not self.from_board:
            self.run(400)
        out = bytes(self.from_board[:n])
        del self.from_board[:n]
        return out

    def run(self, cycles: int) -> None:
        self.now += cycles * PERIOD
        self.sim.run_until(self.now)

    # -- testbenches ----------------------------------------------------------------------
    async def _line_in(self, ctx) -> None:  # noqa: ANN001
        rx = self.pins.rx
        while True:
            if not self.to_board:
                await ctx.tick()
                continue
            byte = self.to_board.popleft()
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                ctx.set(rx, bit)
                await _ticks(ctx, DIV)

    async def _line_out(self, ctx) -> None:  # noqa: ANN001
        tx, rsp = self.pins.tx, bytearray()
        while True:
            await ctx.tick()
            if ctx.get(tx):
                continue
            await _ticks(ctx, DIV + DIV // 2)  # the middle of bit 0
            byte = 0
            for i in range(8):
                byte |= ctx.get(tx) << i
                await _ticks(ctx, DIV)
            rsp.append(byte)
            self._frame_bytes(rsp)

    def _frame_bytes(self, rsp: bytearray) -> None:
        """Whole response frames to the host (or lost, as ``drop`` says)."""
        if len(rsp) < 8:
            return
        length = int.from_bytes(rsp[4:6], "little")
        need = 8 + (length + 2 if length else 0)
        if len(rsp) < need:
            return
        if self.responses not in self.drop:
            self.from_board += rsp[:need]
        self.responses += 1
        del rsp[:need]

    async def _memory(self, ctx) -> None:  # noqa: ANN001
        port = self.link.port
        cmds: deque = deque()
        ctx.set(port.cmd.ready, 1)
        while True:
            if ctx.get(port.cmd.valid):
                p = port.cmd.payload
                cmds.append([ctx.get(p.addr), ctx.get(p.length), ctx.get(p.write)])
            head = cmds[0] if cmds else None
            ctx.set(port.w.ready, bool(head and head[2]))
            ctx.set(port.r.valid, bool(head and not head[2]))
            if head and not head[2]:
                ctx.set(port.r.payload, self.memory.get(head[0], 0))
            moved = head and (ctx.get(port.w.valid) if head[2] else ctx.get(port.r.ready))
            if moved:
                if head[2]:
                    self.memory[head[0]] = ctx.get(port.w.payload)
                head[0] += 1
                head[1] -= 1
                if head[1] == 0:
                    cmds.popleft()
            await ctx.tick()

    async def _device(self, ctx) -> None:  # noqa: ANN001
        link = self.link
        while True:
            ready = self.sink_ready
            ctx.set(link.prog.ready, ready)
            ctx.set(link.host_in.ready, ready)
            ctx.set(link.host_out.valid, bool(self.out_words))
            ctx.set(link.host_out.payload, self.out_words[0] if self.out_words else 0)
            ctx.set(link.readback.valid, bool(self.readback_words))
            ctx.set(link.readback.payload, self.readback_words[0] if self.readback_words else 0)
            if ready and ctx.get(link.prog.valid):
                self.beats.append(ctx.get(link.prog.payload.as_value()))
            if ready and ctx.get(link.host_in.valid):
                self.host_in.append(ctx.get(link.host_in.payload))
            if self.out_words and ctx.get(link.host_out.ready):
                self.out_words.popleft()
            if self.readback_words and ctx.get(link.readback.ready):
                self.readback_words.popleft()
            await ctx.tick()


def _host(board: SimBoard, **kw: object) -> DeviceHost:
    return DeviceHost(
        board,
        CONFIG,
        tensors=TENSORS,
        registers=REGISTERS,
        geometry=GEO,
        timeout=3.0,
        poll=0,
        **kw,
    )


def test_protocol_sizes_and_words() -> None:
    assert D.beat_words(CONFIG) * 16 >= write_layout().size
    assert D.beat_words(CONFIG) == D.REG_WORDS  # a REG entry is a prog beat
    assert D.STATUS_BYTES == 2 + 4 * (len(D.STATUS_FIELDS) - 1)
    assert D.unpack_words(D.pack_words([1, 0xFFFF, -1])) == [1, 0xFFFF, 0xFFFF]
    assert D.reg_words([(7, 0x12345678)]) == [7, 0x5678, 0x1234]
    with pytest.raises(InputError, match="power of two"):
        D.DeviceGeometry(10, staging=100)
    with pytest.raises(InputError, match="exceeds"):
        D.DeviceGeometry(600)


def test_host_and_gateware_with_corrupted_and_lost_bytes() -> None:
    # Request 1 (the first WRITE_DRAM) has a payload byte flipped: NAK_CRC, retried.
    # Request 4 (HOST_IN) has its header CRC flipped: silence, retried.
    # Response 5 (the first REG's ACK) is lost: the retry is answered, not executed again.
    board = SimBoard(corrupt={1: 12, 4: 8}, drop={5})
    host = _host(board)  # IDENT checked: request 0
    rng = random.Random(5)
    words = [rng.randrange(1 << 16) for _ in range(40)]
    host.write_dram(1000, words)  # requests 1 (corrupt), 2
    assert host.stats.nak_crc == 1
    assert host.read_dram(1000, 40) == words  # request 3
    assert {a: board.memory[a] for a in range(1000, 1040)} == dict(
        zip(range(1000, 1040), words, strict=True)
    )
    assert len(board.memory) == 40  # nothing written elsewhere (the corrupt payload neither)
    host.host_in([5, 6, 7])  # requests 4 (dropped by the board), 5
    writes = [(3, 0xDEADBEEF), (40, 17)]
    host.write_registers(writes)  # requests 6 (answer lost), 7 (retry)
    board.run(3000)
    assert board.host_in == [5, 6, 7]  # once each
    assert board.beats == [pack_write(a, v) for a, v in writes]
    # At least the three injected faults were retried (a resynchronisation after the
    # dropped header, on a SYNC byte inside its payload, may cost another).
    assert host.stats.nak_crc == 1 and host.stats.timeouts >= 2 and host.stats.retries >= 3


def test_host_out_ring_readback_status_and_no_room() -> None:
    board = SimBoard()
    host = _host(board)
    out = list(range(100, 140))  # more than the ring holds: the device waits for the host
    board.out_words.extend(out)
    got = host.host_out(25)
    # An answer lost on the line can be asked for again: the board kept the words.
    for _ in range(2):
        assert D.unpack_words(host.request(D.DType.HOST_OUT, 25, 5)) == out[25:30]
    with pytest.raises(LinkRejected):
        host.request(D.DType.HOST_OUT, 24, 1)  # freed by the request for 25
    assert got + host.host_out(15) == out
    board.readback_words.extend([0x01020304, 0xCAFEF00D])
    assert host.readback() == 0x01020304
    assert D.unpack_words(host.request(D.DType.READBACK, 0)) == [0x0304, 0x0102]  # again
    assert host.readback() == 0xCAFEF00D
    assert host.request(D.DType.READBACK, 2) == b""  # none yet
    board.sink_ready = False  # the device takes nothing: the host_in FIFO fills
    host.host_in(list(range(32)))
    assert host.request(D.DType.HOST_IN, 0, 1, D.pack_words([9])) == b"\x00\x00"  # no room
    s = host.status()
    assert s["host_in_queued"] == 32 and s["out_produced"] == 40 and s["readback_taken"] == 2
    assert s["flags"] & D.FLAG_READBACK == 0
    board.sink_ready = True
    board.run(200)
    assert host.status()["host_in_queued"] == 0 and board.host_in == list(range(32))
    with pytest.raises(LinkRejected):
        host.request(D.DType.WRITE_DRAM, 0, 300, D.pack_words([0] * 300))  # over max_count


def test_ident_mismatch_is_refused() -> None:
    board = SimBoard()
    with pytest.raises(IdentityMismatch, match="expects"):
        DeviceHost(
            board, CONFIG, tensors=TENSORS, registers=REGISTERS + 1, geometry=GEO, timeout=3.0
        )


class _SdramOnly(Elaboratable):
    """The board top's SDRAM half: controller and pins (the device left out: quick)."""

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.sdram = sdram = SdramPort(CONFIG.dram)
        req = platform.request  # type: ignore[attr-defined]
        sdram_pins(m, req("sdram", 0, dir="-"), sdram.pins)
        return m


def test_sdram_pins_on_the_ulx3s_resource() -> None:
    board = get_board("ulx3s-85f")
    plan = board.make_platform().prepare(_SdramOnly(), "top")
    lpf, rtlil = plan.files["top.lpf"], plan.files["top.il"]
    # Every pin of amaranth-boards' sdram resource is driven, the clock by an ODDRX1F.
    for pin in ("F19", "F20", "P20", "T20", "T19", "R20", "U19", "E20", "P19", "N20", "M20"):
        assert f'SITE "{pin}"' in lpf, pin
    assert "ODDRX1F" in rtlil and "BB" in rtlil  # the clock pin's DDR buffer, DQ tristates


def test_build_device_refuses_design_options() -> None:
    from barista.cli import main

    argv = ["build", "examples/mnist/lenet_train_test.prototxt", "--board", "ulx3s-85f"]
    assert main([*argv, "--device", "--array", "4x4"]) == 2
    assert main([*argv, "--batch", "2"]) == 2  # --batch is a --device option
