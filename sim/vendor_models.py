"""Behavioural Verilog of the vendor primitives the board builds instantiate, for simulation.

Yosys knows the ECP5 MULT18X18D only as a black box, so a design that instantiates
it (see :mod:`barista_hw.dsp`) cannot be simulated as is. :func:`mult18x18d_verilog`
writes our model of the cell for the subset of its modes we use, from Lattice's
description: 18x18 multiply, signed or unsigned per operand, optional operand and
output registers on CLK0 with clock enable CE0 and synchronous reset RST0, and the
B shift chain (``SOURCEB`` picks ``SRIB``, the previous site's ``SROB``, before the
B register; ``SROB`` is that register). Any other setting (the pipeline register,
other clocks, bypass, the A chain, the chain without the B register) stops the
simulation with an error rather than being simulated wrongly.
"""

from __future__ import annotations

from barista_base.errors import InputError
from barista_hw.dsp import ECP5, ECP5_WIDTH
from barista_hw.rtl import Family

W = ECP5_WIDTH


def _bits(prefix: str, n: int) -> str:
    return ", ".join(f"{prefix}{i}" for i in range(n))


def _vector(prefix: str, n: int) -> str:
    return "{" + ", ".join(f"{prefix}{i}" for i in reversed(range(n))) + "}"


def mult18x18d_verilog() -> str:
    """Verilog text of a ``MULT18X18D`` module (the ports and parameters our Instance uses)."""
    return f"""\
// Behavioural model of the ECP5 MULT18X18D, written by barista (sim/vendor_models.py).
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE", parameter REG_INPUTA_CE = "CE0",
    parameter REG_INPUTA_RST = "RST0", parameter REG_INPUTB_CLK = "NONE",
    parameter REG_INPUTB_CE = "CE0", parameter REG_INPUTB_RST = "RST0",
    parameter REG_INPUTC_CLK = "NONE", parameter REG_PIPELINE_CLK = "NONE",
    parameter REG_OUTPUT_CLK = "NONE", parameter REG_OUTPUT_CE = "CE0",
    parameter REG_OUTPUT_RST = "RST0", parameter CLK0_DIV = "ENABLED",
    parameter GSR = "ENABLED", parameter RESETMODE = "SYNC",
    parameter MULT_BYPASS = "DISABLED"
) (
    input {_bits("A", W)},
    input {_bits("B", W)},
    input {_bits("C", W)},
    input {_bits("SRIB", W)},
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0,
    output {_bits("P", 2 * W)},
    output {_bits("SROB", W)}
);
    wire [{W - 1}:0] a = {_vector("A", W)};
    wire [{W - 1}:0] b = SOURCEB ? {_vector("SRIB", W)} : {_vector("B", W)};
    // Zero after configuration, as the fabric registers the generic form uses.
    reg [{W - 1}:0] a_r = 0, b_r = 0;
    reg [{2 * W - 1}:0] p_r = 0;
    wire [{W - 1}:0] a_i = (REG_INPUTA_CLK == "CLK0") ? a_r : a;
    wire [{W - 1}:0] b_i = (REG_INPUTB_CLK == "CLK0") ? b_r : b;
    // One extra bit carries the sign (or a zero) so signed x unsigned is exact too.
    wire signed [{W}:0] a_x = {{SIGNEDA & a_i[{W - 1}], a_i}};
    wire signed [{W}:0] b_x = {{SIGNEDB & b_i[{W - 1}], b_i}};
    wire signed [{2 * W + 1}:0] full = a_x * b_x;
    wire [{2 * W - 1}:0] p_c = full[{2 * W - 1}:0];
    wire [{2 * W - 1}:0] p = (REG_OUTPUT_CLK == "CLK0") ? p_r : p_c;
    assign {_vector("P", 2 * W)} = p;
    assign {_vector("SROB", W)} = b_r;

    always @(posedge CLK0) begin
        if (SOURCEA === 1'b1 || (SOURCEB === 1'b1 && REG_INPUTB_CLK != "CLK0")) begin
            $display("MULT18X18D model: shift chain mode not modelled (%m)");
            $fatal(1);
        end
        if (RST0) begin
            a_r <= 0; b_r <= 0; p_r <= 0;
        end else if (CE0) begin
            a_r <= a; b_r <= b; p_r <= p_c;
        end
    end

    initial begin
        if ((REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0")
            || (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0")
            || (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0")
            || REG_PIPELINE_CLK != "NONE" || REG_INPUTC_CLK != "NONE"
            || REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_OUTPUT_CE != "CE0"
            || REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0" || REG_OUTPUT_RST != "RST0"
            || RESETMODE != "SYNC" || MULT_BYPASS != "DISABLED" || CLK0_DIV != "ENABLED") begin
            $display("MULT18X18D model: mode not modelled (%m)");
            $fatal(1);
        end
    end
endmodule
"""


def models_verilog(family: str | None) -> str:
    """The models a design elaborated for ``family`` (or a form, see
    :meth:`barista_hw.rtl.Family.of`) needs ("" for the generic RTL)."""
    if family is None:
        return ""
    if Family.of(family).family == ECP5:
        return mult18x18d_verilog()
    raise InputError(f"no simulation models for FPGA family {family!r} (have: {ECP5})")
