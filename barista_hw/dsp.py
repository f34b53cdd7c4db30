"""The PE's multiplier, with its pipeline registers inside the FPGA's DSP block where it has them.

Yosys maps a ``$mul`` onto an ECP5 MULT18X18D but packs no flip-flops into it: the
DSP is used combinationally between fabric registers, so every PE's product path
leaves the fabric, crosses the DSP's multiplier and comes back. MULT18X18D has its
own operand and product registers; :func:`registered_product` uses them at the
PE's latency (operands registered, product registered), so the paths the router
sees are fabric -> DSP register and DSP register -> fabric.

Elsewhere (simulation, iCE40, whose SB_MAC16 Yosys packs itself) the same two
register stages are built in the fabric. Both forms compute the same value on the
same cycle: the cocotb engine suite runs the ECP5 form, with our model of the cell
(:mod:`sim.vendor_models`), against the numpy model too.

The MULT18X18D's registered B operand also leaves the cell on a dedicated shift
chain (SROB) to the next multiplier site's SRIB, where ``SOURCEB`` picks it instead
of the B pins. A PE can take its ``b`` from the PE above that way (:class:`BRoute`):
no fabric register, no fabric wires. The chain links only neighbouring sites, so a
platform says which PEs get it (:data:`B_CHAIN`): a board build that pins the
multipliers (:mod:`boards.floorplan`) and is asked to (``BoardSpec.b_chain``)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from amaranth import ClockSignal, Instance, Module, Signal, Value, signed, unsigned
from amaranth.hdl import ShapeCastable

#: The DSP families this module instantiates directly.
ECP5 = "ecp5"
FAMILIES = (ECP5,)
#: The ECP5 multiplier cell and its operand width (signed).
ECP5_MULT = "MULT18X18D"
ECP5_WIDTH = 18
#: The multiplier instance's name inside its PE (the board floorplan finds it by it).
ECP5_INSTANCE = "mult"
#: MULT18X18D settings that put the operand and product registers in the DSP (CLK0,
#: always enabled, never reset: the PE's data registers have no reset either).
ECP5_REGISTERS = {
    "REG_INPUTA_CLK": "CLK0",
    "REG_INPUTA_CE": "CE0",
    "REG_INPUTA_RST": "RST0",
    "REG_INPUTB_CLK": "CLK0",
    "REG_INPUTB_CE": "CE0",
    "REG_INPUTB_RST": "RST0",
    "REG_INPUTC_CLK": "NONE",
    "REG_PIPELINE_CLK": "NONE",
    "REG_OUTPUT_CLK": "CLK0",
    "REG_OUTPUT_CE": "CE0",
    "REG_OUTPUT_RST": "RST0",
    "CLK0_DIV": "ENABLED",
    "GSR": "DISABLED",
    "RESETMODE": "SYNC",
    "MULT_BYPASS": "DISABLED",
}


#: The width of the ECP5 multipliers' B shift chain (SROB -> SRIB).
CHAIN_SHAPE = unsigned(ECP5_WIDTH)
#: Platform attribute: a predicate ``(row, col) -> bool``, true where PE ``(row, col)``
#: takes ``b`` from PE ``(row - 1, col)`` over the DSP shift chain. Only a build that
#: puts those two multipliers on neighbouring sites may say so.
B_CHAIN = "dsp_b_chain"


class BRoute(Enum):
    """How ``b`` reaches a PE and leaves it for the PE below."""

    #: In from the fabric, out through a fabric register (every form).
    FABRIC = "fabric"
    #: In from the fabric, out on the DSP shift chain (ECP5).
    ENTER = "enter"
    #: In and out on the DSP shift chain (ECP5).
    CHAIN = "chain"


def family_of(platform: object) -> str | None:
    """The DSP family of an Amaranth platform that :func:`registered_product` instantiates."""
    family = getattr(platform, "family", None)
    return family if family in FAMILIES else None


def b_chain_of(platform: object) -> Callable[[int, int], bool]:
    """The platform's :data:`B_CHAIN` predicate (never true without an ECP5 platform)."""
    chained = getattr(platform, B_CHAIN, None)
    if chained is None or family_of(platform) != ECP5:
        return lambda row, col: False
    return chained


def registered_product(
    m: Module,
    a: Value,
    b: Value | None,
    a_reg: Value,
    b_reg: Value | None,
    shape: ShapeCastable,
    family: str | None,
    b_chain_in: Value | None = None,
    b_chain_out: Value | None = None,
) -> Value:
    """``a * b`` two cycles later: the operands registered, then the product.

    ``a_reg``/``b_reg`` are the operands already registered in the fabric (the PE
    has them for its neighbours); the generic form multiplies those. On ``family``
    ``"ecp5"`` the DSP registers ``a`` and ``b`` itself, in parallel with
    ``a_reg``/``b_reg`` (operands of at most 18 bits, as
    :data:`barista_hw.numfmt.MAX_WIDTH` guarantees). There ``b_chain_in``, if given,
    takes the place of ``b`` (the previous site's shift chain), and ``b_chain_out``,
    if given, receives this site's (its registered ``b``); both :data:`CHAIN_SHAPE`.
    """
    prod = Signal(shape, reset_less=True)
    if family == ECP5:
        m.d.comb += prod.eq(_ecp5_mult(m, a, b, b_chain_in, b_chain_out))
    elif b is None or b_reg is None or b_chain_out is not None:
        raise ValueError("the B shift chain exists only in the ECP5 form")
    else:
        m.d.sync += prod.eq(a_reg * b_reg)
    return prod


def _ecp5_mult(
    m: Module, a: Value, b: Value | None, b_chain_in: Value | None, b_chain_out: Value | None
) -> Signal:
    """A MULT18X18D with operand and output registers; returns its 36-bit signed product."""
    if (b is None) == (b_chain_in is None):
        raise ValueError("a MULT18X18D takes B from its pins or from the chain, not both")
    b = b_chain_in if b is None else b
    if max(len(a), len(b)) > ECP5_WIDTH:
        raise ValueError(f"MULT18X18D operands are at most {ECP5_WIDTH} bits")
    a18, b18 = Signal(signed(ECP5_WIDTH)), Signal(signed(ECP5_WIDTH))
    p = Signal(signed(2 * ECP5_WIDTH))
    m.d.comb += [a18.eq(a), b18.eq(b)]  # sign extension to the DSP's width
    ports: dict[str, object] = {
        "i_SIGNEDA": 1,
        "i_SIGNEDB": 1,
        "i_SOURCEA": 0,
        "i_SOURCEB": int(b_chain_in is not None),
        "i_CLK0": ClockSignal(),
        "i_CE0": 1,
        "i_RST0": 0,
    }
    for i in range(ECP5_WIDTH):
        ports[f"i_A{i}"] = a18[i]
        ports[f"i_C{i}"] = 0
        if b_chain_in is None:
            ports[f"i_B{i}"] = b18[i]
        else:
            ports[f"i_SRIB{i}"] = b_chain_in[i]
        if b_chain_out is not None:
            ports[f"o_SROB{i}"] = b_chain_out[i]
    for i in range(2 * ECP5_WIDTH):
        ports[f"o_P{i}"] = p[i]
    params = {f"p_{k}": v for k, v in ECP5_REGISTERS.items()}
    m.submodules[ECP5_INSTANCE] = Instance(ECP5_MULT, **params, **ports)
    return p
