"""Floorplan: each PE's multiplier fixed to a DSP site, so that array neighbours sit side by side.

An ECP5's multipliers lie in a few horizontal rows of DSP blocks (the 85F: three rows
of 52). Left to itself, nextpnr's placer folds a 10 x 15 array onto those rows in
its own way: neighbours in the array end up dozens of columns apart. Each PE passes
its ``b`` operand down and its 48-bit result bank up the array column, so those
hops cross every cut of a DSP row many times over.

:func:`pe_sites` lays the array out column by column: the PEs of one array column
take consecutive sites, so the ``b`` and drain hops go to the next site, and an
``a`` hop skips ``rows`` sites. A DSP row takes whole array columns where they fit,
and successive DSP rows run in opposite directions (a snake), so the hop from the
last column of one DSP row to the first of the next is a vertical one. Within a
column the rows always go left to right: that is the direction of the multipliers'
B shift chain, which can then carry ``b`` down the column with no fabric at all
(:func:`b_chain`, when the board asks for it; the chain is broken only where the
column's sites cross the device's centre, which nextpnr cannot route).

:func:`yosys_script` writes the placement as ``BEL`` attributes, which nextpnr
honours, and makes Yosys stop if any PE's multiplier was not found. The pinned
placement is shorter and faster to place than nextpnr's own (figures in
docs/boards.md). :data:`DSP_GRIDS` holds the devices whose sites are known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from barista_hw.array import SystolicArray
from barista_hw.dsp import ECP5_INSTANCE, ECP5_MULT


@dataclass(frozen=True)
class DspGrid:
    """The multiplier sites of one ECP5 device, as nextpnr names them (``X<x>/Y<y>/MULT18_<o>``)."""

    rows: tuple[int, ...]  # Y of each DSP row
    blocks: tuple[int, ...]  # X of each DSP block's first multiplier
    offsets: tuple[int, ...] = (0, 1, 4, 5)  # a block's multipliers: X + o, bel MULT18_<o>
    # X of the blocks where the B shift chain starts afresh (after the centre spine).
    chain_starts: tuple[int, ...] = ()

    @property
    def per_row(self) -> int:
        return len(self.blocks) * len(self.offsets)

    @property
    def size(self) -> int:
        return self.per_row * len(self.rows)

    def strip(self, i: int) -> list[str]:
        """The sites of DSP row ``i`` in order: left to right on even rows, right to left on odd."""
        y = self.rows[i]
        sites = [(b + o, o) for b in self.blocks for o in self.offsets]
        sites.sort(reverse=i % 2 == 1)
        return [f"X{x}/Y{y}/MULT18_{o}" for x, o in sites]

    def chain_links(self) -> set[tuple[str, str]]:
        """Pairs (site, the site its SROB reaches): left to right along a DSP row."""
        links = set()
        for i in range(len(self.rows)):
            order = sorted(self.strip(i), key=_site_x)
            pairs = zip(order, order[1:], strict=False)
            links |= {(a, b) for a, b in pairs if _site_x(b) not in self.chain_starts}
        return links


def _site_x(site: str) -> int:
    """X of a site named ``X<x>/Y<y>/MULT18_<o>``."""
    return int(site.split("/")[0][1:])


#: LFE5U-85F, from nextpnr 0.11's device database (each site checked by pinning a
#: multiplier to it; the gap after X58 is the centre clock spine). Its B shift chain
#: runs left to right within each half of each DSP row: nextpnr 0.11 routes every such
#: link but not the one across the spine, from X63 to X69.
ECP5_85F = DspGrid(
    rows=(10, 34, 58),
    blocks=(4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114),
    chain_starts=(69,),
)

#: Device (:attr:`barista_hw.targets.Target.device`) -> its multiplier sites. A board
#: whose device is here gets its PEs' multipliers pinned (:mod:`boards.build`).
DSP_GRIDS: dict[str, DspGrid] = {"LFE5U-85F": ECP5_85F}


def pe_sites(rows: int, cols: int, grid: DspGrid) -> dict[tuple[int, int], str]:
    """PE ``(r, c)`` -> DSP site, column-major over as few DSP rows as hold whole columns.

    When a DSP row cannot hold even one array column per share, the columns run on
    across DSP rows in the same order. Raises ``ValueError`` if the array has more
    PEs than the device has multipliers.
    """
    if rows * cols > grid.size:
        raise ValueError(
            f"a {rows}x{cols} array needs more than the device's {grid.size} multipliers"
        )
    strips = [grid.strip(i) for i in range(len(grid.rows))]
    for used in range(1, len(strips) + 1):
        per_strip = math.ceil(cols / used)
        if per_strip * rows <= grid.per_row:
            sites = {}
            for c in range(cols):
                i, first = c // per_strip, (c % per_strip) * rows
                for r in range(rows):
                    # Rows left to right on right-to-left strips too (the B chain's way).
                    sites[r, c] = strips[i][first + (rows - 1 - r if i % 2 else r)]
            return sites
    chain = [site for strip in strips for site in strip]
    return {(r, c): chain[c * rows + r] for r in range(rows) for c in range(cols)}


def b_chain(rows: int, cols: int, grid: DspGrid) -> frozenset[tuple[int, int]]:
    """The PEs ``(r, c)`` of :func:`pe_sites` whose ``b`` can come from PE ``(r - 1, c)``
    over the multipliers' shift chain (see :data:`barista_hw.dsp.B_CHAIN`)."""
    sites, links = pe_sites(rows, cols, grid), grid.chain_links()
    return frozenset(
        (r, c) for (r, c) in sites if r > 0 and (sites[r - 1, c], sites[r, c]) in links
    )


def yosys_script(rows: int, cols: int, grid: DspGrid) -> str:
    """Yosys commands (run on the hierarchical design) that pin every PE's multiplier."""
    lines = [
        # Amaranth names each PE's module after its path: "top.<...>.array.pe_<r>_<c>".
        f'setattr -set BEL "{site}" *.{SystolicArray.pe_name(r, c)}/{ECP5_INSTANCE}'
        for (r, c), site in sorted(pe_sites(rows, cols, grid).items())
    ]
    lines.append(f"select -assert-count {rows * cols} t:{ECP5_MULT} a:BEL %i")
    return "\n".join(lines)
