"""Board clock generation: one PLL per board top, parameters found by exhaustive search.

* ECP5 ``EHXPLLL`` (ULX3S, 25 MHz in): ``f_out = f_in * CLKFB_DIV / CLKI_DIV`` with the
  feedback from CLKOP, VCO ``f_out * CLKOP_DIV`` in 400..800 MHz, phase detector
  ``f_in / CLKI_DIV`` >= 3.125 MHz (the limits ``ecppll`` uses).
* iCE40 ``SB_PLL40_PAD`` (iCEBreaker, 12 MHz on the PLL's pad): simple feedback,
  ``f_out = f_in * (DIVF+1) / ((DIVR+1) * 2**DIVQ)``, phase detector 10..133 MHz,
  VCO 533..1066 MHz, ``FILTER_RANGE`` from the phase-detector frequency (as ``icepll``).

:class:`PllDomain` builds the ``sync`` domain from the board clock: through the PLL
when the requested frequency differs from the board clock, else directly; the domain
is held in reset until the PLL locks (a :class:`ResetSynchronizer`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from amaranth import (
    ClockDomain,
    ClockSignal,
    Const,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from barista_base.errors import InputError

#: Closest achievable frequency must be within this fraction of the request.
TOLERANCE = 0.02


@dataclass(frozen=True)
class PllParams:
    """A PLL solution: the divider values and the frequency they give."""

    family: str
    f_in_mhz: float
    f_out_mhz: float
    params: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def ecp5_pll(f_in: float, f_out: float) -> PllParams:
    """EHXPLLL dividers for ``f_out`` MHz from ``f_in`` MHz (closest; first found on ties)."""
    best: tuple[float, dict[str, int], float] | None = None
    for clki in range(1, 129):
        pfd = f_in / clki
        if pfd < 3.125:
            break
        for fb in range(1, 81):
            fo = pfd * fb
            if fo > 400:
                break
            for op in range(1, 129):
                if 400 <= fo * op <= 800:
                    err = abs(fo - f_out)
                    if best is None or err < best[0] - 1e-9:
                        best = (err, {"CLKI_DIV": clki, "CLKFB_DIV": fb, "CLKOP_DIV": op}, fo)
                    break
    return _pick("ecp5", f_in, f_out, best)


def ice40_pll(f_in: float, f_out: float) -> PllParams:
    """SB_PLL40 dividers (simple feedback) for ``f_out`` MHz from ``f_in`` MHz."""
    best: tuple[float, dict[str, int], float] | None = None
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                fo = vco / (1 << divq)
                err = abs(fo - f_out)
                if best is None or err < best[0] - 1e-9:
                    rng = next(i for i, top in enumerate((17, 26, 44, 66, 101), 1) if pfd < top)
                    params = {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": rng}
                    best = (err, params, fo)
    return _pick("ice40", f_in, f_out, best)


def _pick(
    family: str, f_in: float, f_out: float, best: tuple[float, dict[str, int], float] | None
) -> PllParams:
    if best is None or best[0] > TOLERANCE * f_out:
        got = f" (closest {best[2]:.3f} MHz)" if best else ""
        raise InputError(f"no {family} PLL setting makes {f_out:g} MHz from {f_in:g} MHz{got}")
    return PllParams(family, f_in, round(best[2], 6), best[1])


class PllDomain(Elaboratable):
    """Drives the ``sync`` domain (defined by the parent) at ``f_out`` MHz from ``clk``."""

    def __init__(self, family: str, clk: str, f_in: float, f_out: float) -> None:
        self.family = family
        self.clk = clk
        self.f_in = f_in
        self.f_out = f_out
        if abs(f_out - f_in) < 1e-9:
            self.pll: PllParams | None = None
        elif family == "ecp5":
            self.pll = ecp5_pll(f_in, f_out)
        elif family == "ice40":
            self.pll = ice40_pll(f_in, f_out)
        else:
            raise InputError(f"no PLL support for FPGA family {family!r}")

    @property
    def mhz(self) -> float:
        return self.pll.f_out_mhz if self.pll else self.f_in

    def elaborate(self, platform: object) -> Module:
        m = Module()
        # ``keep``: this net is also the ``sync`` domain's clock, and Yosys would otherwise
        # merge this name into that one (``clk``) and drop it, leaving nextpnr a constraint
        # on a net that "does not exist in design". Kept, it stays one of the net's names.
        clk_out = Signal(attrs={"keep": 1})
        locked = Signal()
        port = platform.request(self.clk, dir="-")  # type: ignore[attr-defined]
        if self.pll is None:
            m.submodules.clk_buf = buf = io.Buffer("i", port)
            m.d.comb += [clk_out.eq(buf.i), locked.eq(1)]
        elif self.family == "ecp5":
            m.submodules.clk_buf = buf = io.Buffer("i", port)
            m.submodules.pll = self._ehxplll(self.pll, buf.i, clk_out, locked)
        else:
            # The iCEBreaker's 12 MHz oscillator is on the PLL's own pad: SB_PLL40_PAD.
            m.submodules.pll = self._sb_pll40_pad(self.pll, port, clk_out, locked)
        m.d.comb += ClockSignal("sync").eq(clk_out)
        self._reset(m, clk_out, locked)
        platform.add_clock_constraint(clk_out, self.mhz * 1e6)  # type: ignore[attr-defined]
        return m

    def _ehxplll(self, pll: PllParams, clk_in: Signal, clk_out: Signal, locked: Signal) -> Instance:
        """The ECP5 PLL: ``clk_in`` to ``clk_out`` (its feedback), ``locked`` when locked."""
        p = pll.params
        return Instance(
            "EHXPLLL",
            p_PLLRST_ENA="DISABLED",
            p_INTFB_WAKE="DISABLED",
            p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1,
            p_CLKOP_FPHASE=0,
            p_CLKI_DIV=p["CLKI_DIV"],
            p_CLKFB_DIV=p["CLKFB_DIV"],
            p_FEEDBK_PATH="CLKOP",
            i_CLKI=clk_in,
            i_CLKFB=clk_out,
            i_RST=Const(0),
            i_STDBY=Const(0),
            i_PHASESEL0=Const(0),
            i_PHASESEL1=Const(0),
            i_PHASEDIR=Const(0),
            i_PHASESTEP=Const(0),
            i_PHASELOADREG=Const(0),
            i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0),
            o_CLKOP=clk_out,
            o_LOCK=locked,
            a_FREQUENCY_PIN_CLKI=f"{self.f_in:g}",
            a_FREQUENCY_PIN_CLKOP=f"{pll.f_out_mhz:g}",
            a_ICP_CURRENT="12",
            a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
        )

    def _sb_pll40_pad(
        self, pll: PllParams, port: object, clk_out: Signal, locked: Signal
    ) -> Instance:
        """The iCE40 PLL on the clock's pad (``port``): ``clk_out``, ``locked`` when locked."""
        p = pll.params
        return Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=p["DIVR"],
            p_DIVF=p["DIVF"],
            p_DIVQ=p["DIVQ"],
            p_FILTER_RANGE=p["FILTER_RANGE"],
            io_PACKAGEPIN=port.io,  # type: ignore[attr-defined]
            i_RESETB=Const(1),
            i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clk_out,
            o_LOCK=locked,
        )

    def _reset(self, m: Module, clk_out: Signal, locked: Signal) -> None:
        """Hold ``sync`` in reset until ``locked``, released synchronously to ``clk_out``.

        On ECP5 the reset reaches every control flip-flop of a large array: it goes on a
        global network (a DCCA), as nextpnr promotes only clocks by itself.
        """
        if self.family == "ecp5":
            m.domains.rst_gen = ClockDomain("rst_gen")
            m.d.comb += ClockSignal("rst_gen").eq(clk_out)
            m.submodules.reset_sync = ResetSynchronizer(~locked, domain="rst_gen")
            m.submodules.rst_buf = Instance(
                "DCCA",
                i_CLKI=ResetSignal("rst_gen"),
                i_CE=Const(1),
                o_CLKO=ResetSignal("sync"),
            )
        else:
            m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
