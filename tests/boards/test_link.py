"""The UART host link: frames and CRC, the gateware at byte level (pysim), and the real host
driver against the Verilated board top with its UART pins (clean and faulty lines)."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from barista_base.errors import InputError
from barista_hw import model
from barista_hw.accelerator import Accelerator, run_layout
from barista_hw.command import GemmCommand
from barista_hw.config import AcceleratorConfig, EngineConfig
from barista_hw.numfmt import FixedFormat, Rounding
from barista_hw.presets import get_preset
from barista_hw.schedule import pack_a, pack_b, schedule_gemm
from boards import protocol as P
from boards.link import HostLink, connect_accelerator, crc16_step
from caffe_bridge.datasets import example_dir

LENET = example_dir("mnist") / "lenet_train_test.prototxt"

# A LeNet-sized accelerator that simulates quickly: 8-bit lanes, buffers big enough
# that one image's conv1 gradient reduction (576) fits half a buffer.
LINK_CFG = AcceleratorConfig(
    EngineConfig(4, 4, FixedFormat.parse("fx8"), acc_depth=32), 2048, 2048, 50.0, "link-test"
)
SIM_DIVISOR = 4  # the bridge is cycle-exact: the shortest bit time the UART takes


# -- frames and CRC ---------------------------------------------------------------------------
def test_crc16_check_value_and_residue() -> None:
    assert P.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    data = bytes(range(40))
    assert P.crc16(data + P.crc16(data).to_bytes(2, "big")) == 0
    assert P.crc16(data + P.crc16(data).to_bytes(2, "little")) != 0


def test_gateware_crc_matches_host() -> None:
    crc = Signal(16, init=0xFFFF)
    byte = Signal(8)
    m = Module()
    m.d.sync += crc.eq(crc16_step(crc, byte))
    data = bytes(np.random.default_rng(3).integers(0, 256, 50, dtype=np.uint8))
    seen = []

    async def bench(ctx) -> None:  # noqa: ANN001
        for b in data:
            ctx.set(byte, b)
            await ctx.tick()
            seen.append(ctx.get(crc))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [P.crc16(data[: i + 1]) for i in range(len(data))]


def test_request_roundtrip_and_every_single_bit_error_detected() -> None:
    geo = P.LinkGeometry.from_config(LINK_CFG)
    words = np.arange(-12, 12).reshape(6, 4)
    payload = P.pack_lanes(words, 8, geo.a_word_bytes)
    frame = P.encode_request(P.Type.WRITE_A, 7, 100, 6, payload)
    assert P.decode_request(frame, geo) == (P.Type.WRITE_A, 7, 100, 6, payload)
    for bit in range(8, 8 * len(frame)):  # every bit after SYNC
        bad = bytearray(frame)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(P.FrameError):
            P.decode_request(bytes(bad), geo)
    for cut in (5, len(frame) - 1):
        with pytest.raises(P.FrameError):
            P.decode_request(frame[:cut], geo)


def test_response_roundtrip_and_errors() -> None:
    frame = P.encode_response(P.Code.ACK, P.Type.READ, 200, b"\x01\x02\x03")
    rsp = P.decode_response(frame)
    assert (rsp.code, rsp.type, rsp.seq, rsp.payload) == (P.Code.ACK, 5, 200, b"\x01\x02\x03")
    for bit in range(8, 8 * len(frame)):
        bad = bytearray(frame)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(P.FrameError):
            P.decode_response(bytes(bad))
    with pytest.raises(P.FrameError):
        P.decode_response(frame[:-1])


@pytest.mark.parametrize("width", [3, 8, 12, 16, 18])
def test_lane_packing_roundtrip(width: int) -> None:
    rng = np.random.default_rng(width)
    lanes = 5
    words = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (9, lanes))
    nbytes = -(-lanes * width // 8)
    data = P.pack_lanes(words, width, nbytes)
    assert len(data) == 9 * nbytes
    np.testing.assert_array_equal(P.unpack_lanes(data, lanes, width, nbytes), words)
    # lane 0 sits in the lowest bits of the little-endian word
    first = int.from_bytes(data[:nbytes], "little")
    assert first & ((1 << width) - 1) == words[0, 0] & ((1 << width) - 1)


def test_run_packing_follows_run_layout() -> None:
    geo = P.LinkGeometry.from_config(LINK_CFG)
    fields = {name: 1 for name, _, _ in geo.run_fields}
    value = int.from_bytes(geo.pack_run(fields), "little")
    assert value == sum(1 << off for _, off, _ in geo.run_fields)
    with pytest.raises(InputError, match="does not fit"):
        geo.pack_run({**fields, "m": 1 << 20})
    with pytest.raises(InputError, match="lacks field"):
        geo.pack_run({"m": 1})


# -- the gateware at byte level (Amaranth simulator) ------------------------------------------
class _LinkBench(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig, depth: int) -> None:
        self.cfg = cfg
        self.link = HostLink(cfg, depth, divisor=4)
        super().__init__({})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.acc = acc = Accelerator(self.cfg)
        connect_accelerator(m, link, acc)
        return m


def test_link_gateware_protocol_cases() -> None:
    """NAK on a payload CRC error, silence on a header CRC error, NAK_BAD on impossible
    requests, a retried RUN runs once, and a small GEMM (ring of 4 beats, several READs)
    is bit-exact."""
    cfg = get_preset("tiny")
    depth = 4
    geo = P.LinkGeometry.from_config(cfg, depth)
    dut = _LinkBench(cfg, depth)
    link = dut.link
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (3, 5))
    b = rng.integers(-128, 128, (5, 6))
    chunks = schedule_gemm(cfg, 3, 5, 6)
    assert len(chunks) == 1  # the tiny buffers take this GEMM in one command
    c = chunks[0]
    cmd = GemmCommand(shift=6, rounding=Rounding.STOCHASTIC, seed=9)
    run = cmd.chunk(c).fields(run_layout(cfg))
    answers: list[bytes] = []
    commands = [0]

    async def count_commands(ctx) -> None:  # noqa: ANN001
        async for _, _, valid, ready in ctx.tick().sample(link.cmd.valid, link.cmd.ready):
            commands[0] += valid and ready

    async def bench(ctx) -> None:  # noqa: ANN001
        async def send(frame: bytes) -> bytes:
            out = bytearray()
            ctx.set(link.tx.ready, 1)
            for byte in frame:  # answers may start before the request ends (NAK_BAD)
                ctx.set(link.rx.payload, byte)
                ctx.set(link.rx.valid, 1)
                for _ in range(3):  # the link's minimum byte spacing (a UART's is >= 40)
                    if ctx.get(link.tx.valid):
                        out.append(ctx.get(link.tx.payload))
                    await ctx.tick()
                    ctx.set(link.rx.valid, 0)
            quiet = 0
            while quiet < 80:
                if ctx.get(link.tx.valid):
                    out.append(ctx.get(link.tx.payload))
                    quiet = 0
                else:
                    quiet += 1
                await ctx.tick()
            if not out:  # the host's timeout: long enough for the link to drop a partial frame
                await ctx.tick().repeat(P.IDLE_BYTE_TIMES * 10 * 4 + 10)
            return bytes(out)

        wa = P.pack_lanes(pack_a(a, 2), 8, geo.a_word_bytes)
        wb = P.pack_lanes(pack_b(b, 2), 8, geo.b_word_bytes)
        bad = bytearray(P.encode_request(P.Type.WRITE_A, 1, c.a_base, 10, wa))
        bad[-5] ^= 0x10  # payload bit error
        answers.append(await send(bytes(bad)))
        bad = bytearray(P.encode_request(P.Type.WRITE_A, 2, c.a_base, 10, wa))
        bad[4] ^= 0x01  # address bit error: caught by the header CRC, no answer
        answers.append(await send(bytes(bad)))
        answers.append(await send(P.encode_request(P.Type.WRITE_A, 3, 60, 10, wa)))  # past end
        answers.append(await send(P.encode_request(P.Type.WRITE_A, 4, c.a_base, 10, wa)))
        answers.append(await send(P.encode_request(P.Type.WRITE_B, 5, c.b_base, 15, wb)))
        run_frame = P.encode_request(P.Type.RUN, 6, payload=geo.pack_run(run))
        answers.append(await send(run_frame))
        answers.append(await send(run_frame))  # the host lost the ACK and retries
        # 9 beats through a ring of 4; beats 2..3 asked twice (as after a lost answer)
        for first, count in ((0, 2), (2, 2), (2, 2), (4, 4), (8, 1)):
            answers.append(await send(P.encode_request(P.Type.READ, 7 + first, first, count)))
        answers.append(await send(P.encode_request(P.Type.READ, 20, 0, 2)))  # freed already
        answers.append(await send(P.encode_request(P.Type.READ, 21, 4, 9)))  # > ring
        answers.append(await send(P.encode_request(P.Type.IDENT, 22)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(count_commands, background=True)
    sim.run()
    codes = [P.decode_response(x).code if x else None for x in answers]
    assert codes[:3] == [P.Code.NAK_CRC, None, P.Code.NAK_BAD]
    assert codes[3:12] == [P.Code.ACK] * 9
    assert codes[12:14] == [P.Code.NAK_BAD, P.Code.NAK_BAD]
    assert P.decode_response(answers[14]).payload == P.ident_payload(cfg, depth)
    assert commands[0] == 1  # the retried RUN did not run again
    r = [P.decode_response(x).payload for x in answers[7:12]]
    assert r[1] == r[2]
    beats = P.unpack_lanes(r[0] + r[1] + r[3] + r[4], 2, 8, geo.beat_bytes)
    idx = model.output_beats(3, 6, 2, 2)
    got = beats[idx, np.arange(6)[None, :] % 2]
    want = model.gemm_on_accelerator(a, b, cfg, cmd)
    np.testing.assert_array_equal(got, want)


# -- the host driver against the Verilated board top --------------------------------------------
def _lenet_passes() -> list[tuple[str, int, int, int, int]]:
    """(label, M, k, N, images) of LeNet passes at batch 2, from the real prototxt."""
    from barista.commands.generate import load_layers

    _, layers = load_layers(str(LENET), {"data": (2, 1, 28, 28), "label": (2,)})
    by = {layer.name: layer for layer in layers}
    c1, c2, ip2 = by["conv1"], by["conv2"], by["ip2"]
    return [
        ("conv1 forward", c1.m, c1.k, c1.n, 1),
        ("conv1 gradient", c1.m, c1.p, c1.k, c1.batch),
        ("conv2 backward-data", c2.k, c2.m, c2.n, 1),
        ("ip2 forward", ip2.m, ip2.k, ip2.n, 1),
    ]


@pytest.fixture(scope="module")
def sim_board_available() -> None:
    from boards.sim_board import build_bridge
    from sim.tools import SimulatorNotFound

    try:
        build_bridge(LINK_CFG, SIM_DIVISOR)
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))


def _operands(rng: np.random.Generator, m: int, kt: int, n: int) -> tuple[np.ndarray, ...]:
    return rng.integers(-128, 128, (m, kt)), rng.integers(-128, 128, (kt, n))


@pytest.mark.slow
def test_lenet_passes_on_simulated_board(sim_board_available: None) -> None:
    from boards.host import BoardLink
    from boards.sim_board import SimulatedBoard

    rng = np.random.default_rng(0)
    with SimulatedBoard(LINK_CFG, divisor=SIM_DIVISOR) as board:
        with BoardLink(board.url, LINK_CFG, timeout=2.0) as link:
            assert link.identity is not None and link.identity.config_hash == P.config_hash(
                LINK_CFG
            )
            for i, (label, m, k, n, images) in enumerate(_lenet_passes()):
                a, b = _operands(rng, m, k * images, n)
                rounding = (Rounding.NEAREST_EVEN, Rounding.STOCHASTIC)[i % 2]
                cmd = GemmCommand(shift=9, rounding=rounding, seed=11 + i, images=images)
                run = link.gemm(a, b, cmd)
                want = model.gemm_on_accelerator(a, b, LINK_CFG, cmd)
                np.testing.assert_array_equal(run.result, want, err_msg=label)
                assert run.cycles >= -(-m // 4) * -(-n // 4) * k * images, label
            assert link.stats.retries == 0
    assert "0 flipped 0 dropped" in board.log


@pytest.mark.slow
def test_bit_errors_both_directions_are_recovered(sim_board_available: None) -> None:
    from boards.host import BoardLink
    from boards.sim_board import SimulatedBoard

    rng = np.random.default_rng(5)
    a, b = _operands(rng, 20, 25, 160)
    faults = {"flip_h2b": 2e-4, "flip_b2h": 2e-4, "drop_h2b": 5e-5, "drop_b2h": 5e-5}
    with SimulatedBoard(LINK_CFG, divisor=SIM_DIVISOR, seed=7, **faults) as board:
        with BoardLink(board.url, LINK_CFG, timeout=0.3, retries=20, max_words=64) as link:
            for seed in range(3):
                cmd = GemmCommand(shift=8, rounding=Rounding.STOCHASTIC, seed=seed)
                run = link.gemm(a, b, cmd)
                want = model.gemm_on_accelerator(a, b, LINK_CFG, cmd)
                np.testing.assert_array_equal(run.result, want)
            stats = link.stats
    # the bridge injected faults in both directions and the host had to recover from them
    assert "host->board 0 flipped" not in board.log
    assert "board->host 0 flipped" not in board.log
    assert stats.retries > 0
    assert stats.nak_crc + stats.timeouts + stats.bad_frames >= stats.retries


@pytest.mark.slow
def test_board_backend_matches_golden(sim_board_available: None) -> None:
    from barista.backends import get_backend
    from barista.backends.board import BoardBackend
    from barista.backends.hardware import GoldenBackend
    from boards.sim_board import SimulatedBoard

    rng = np.random.default_rng(2)
    w = rng.standard_normal((10, 50)).astype(np.float32)
    x = rng.standard_normal((2, 50, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 10, 3)).astype(np.float32)
    golden = GoldenBackend(rounding="stochastic", accelerator=LINK_CFG)
    with SimulatedBoard(LINK_CFG, divisor=SIM_DIVISOR) as board:
        backend = get_backend("board", rounding="stochastic", port=board.url, accelerator=LINK_CFG)
        assert isinstance(backend, BoardBackend)
        try:
            for be in (golden, backend):
                be.results = [  # type: ignore[attr-defined]
                    be.forward(w, x, layer="ip"),
                    be.backward_data(w, dy, layer="ip"),
                    be.weight_grad(dy, x, layer="ip"),
                ]
        finally:
            backend.close()
    for got, want in zip(backend.results, golden.results, strict=True):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(got, want)
    assert backend.cycles["ip/forward"] > 0


@pytest.mark.slow
def test_wrong_bitstream_is_refused(sim_board_available: None) -> None:
    from dataclasses import replace

    from boards.host import BoardLink, IdentityMismatch
    from boards.sim_board import SimulatedBoard

    other = replace(LINK_CFG, a_depth=1024)
    with SimulatedBoard(LINK_CFG, divisor=SIM_DIVISOR) as board:
        with pytest.raises(IdentityMismatch, match="built for configuration"):
            BoardLink(board.url, other, timeout=2.0).close()


def test_silent_port_times_out_clearly() -> None:
    pytest.importorskip("serial")
    from boards.host import BoardLink, LinkTimeout

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    conns: list[socket.socket] = []
    t = threading.Thread(target=lambda: conns.append(server.accept()[0]), daemon=True)
    t.start()
    try:
        with pytest.raises(LinkTimeout, match=r"no valid answer to IDENT .* after 2 attempts"):
            BoardLink(f"socket://127.0.0.1:{port}", LINK_CFG, timeout=0.2, retries=1)
    finally:
        t.join(timeout=2)
        for c in conns:
            c.close()
        server.close()
