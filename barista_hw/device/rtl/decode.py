"""The host's side of the device's decoder: what it writes once, and before each iteration.

The device decodes each instruction itself (:class:`~.decoder.Decoder`) from three parts:

* the **static command** (:func:`static_command`): the unit's command as the program's
  tables fix it (DMA walks from the descriptors, VecMem's walks, the GEMM's sizes), with
  every field that depends on an exponent, a seed or a host scalar zero. It depends on
  the program only, so the host computes it once with the program and it travels beside
  the record unchanged in every iteration; the :func:`decode_layout` fields name the
  tensors and the registers a GEMM or HOST_IN reads (a VEC's are in its record);
* the **exponent file** (one :func:`entry_layout` entry a tensor, the model's
  :class:`~barista_hw.device.scaling.ScaleTable`), loaded once (:func:`exponent_writes`)
  and then kept by the device: writes set ``stored``, SCALE moves ``frac``;
* the **host registers** (:class:`RegisterMap`): the iteration's seeds, the host's
  scalars (lr, decay, momentum, encoded) and the exponents of what the host sends,
  written before each iteration (:meth:`RegisterMap.values`).

A register write is a ``prog`` beat, :func:`write_layout` (``prog`` carries nothing else:
the records come from DRAM, :mod:`.fetch`). Addresses below :data:`EXP_BASE` are host
registers, from it exponent entries (four words a tensor: exponents, peak, saturated,
overflow and written).
An address with :data:`READ` set (:func:`read_address`) writes nothing: the device sends
that exponent-entry word back on ``readback`` (the host learns the exponents the device
chose, :func:`read_entry` decodes the first word), in order with the records (``prog``
waits while a run of them is fetched).
Two addresses are the device top's, not the decoder's: :data:`FETCH_ADDR` (the word
address of the next program beat in DRAM) and :data:`FETCH_RUN` (run that many beats
from it; :mod:`.fetch`), so host registers stay below :data:`FETCH_ADDR`. A read of
:data:`STATUS` gives the decoder's ``lost`` bits: a unit's statistics report that found
its queue full (:data:`~.decoder.REPORT_NAMES`), which the host must treat as an error.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from amaranth import Shape, signed, unsigned
from amaranth.lib import data

from barista_base.errors import InputError
from barista_hw.command import GemmCommand
from barista_hw.numfmt import Rounding
from barista_hw.schedule import block_seed

from ..isa import FIELDS, HEADER, ON_C, Instruction, Op, Program
from ..machine import iteration_seed
from ..memory import DeviceConfig
from ..scaling import ScaleTable
from ..vector import Rounder, VecOp, encode_scalar
from . import gemm_path, link, vecmem
from .vector import RAW_BITS

__all__ = [
    "EXP_BASE",
    "FETCH_ADDR",
    "FETCH_RUN",
    "RegisterMap",
    "READ",
    "STATUS",
    "check_fits",
    "command_layout",
    "decode_fields",
    "decode_layout",
    "entry_layout",
    "exponent_entry",
    "exponent_writes",
    "field_at",
    "read_address",
    "read_entry",
    "static_command",
    "write_layout",
]

TENSOR_BITS = 16  # a tensor index, as records name them (isa.NONE: none)
REG_BITS = 32
REG_INDEX_BITS = 12
EXP_BASE = 0x8000  # register addresses from here: exponent entries
FRAC_BITS = 8  # frac in [MIN_FRAC, MAX_FRAC]
STORED_BITS = 10  # what a write may leave (a GEMM's fa + fb - shift)
READ = 0x4000  # in a write's address: read the entry word back (below EXP_BASE's bit)
FETCH_ADDR = 0x2000  # the top's: the next program beat's word address in DRAM (.fetch)
FETCH_RUN = 0x2001  # the top's: fetch and run that many beats (.fetch)
STATUS = 0x2002  # read (with READ): the decoder's lost reports, a bit a port (sticky)


def command_layout(config: DeviceConfig) -> data.UnionLayout:
    """A unit's command: the GEMM path's (LOAD, STORE, GEMM), VecMem's or the link's."""
    return data.UnionLayout(
        {
            "path": gemm_path.command_layout(config),
            "vec": vecmem.command_layout(),
            "link": link.command_layout(),
        }
    )


def entry_layout() -> data.StructLayout:
    """An exponent file entry: :class:`~barista_hw.device.scaling.Entry`'s exponents."""
    return data.StructLayout(
        {
            "frac": signed(FRAC_BITS),
            "stored": signed(STORED_BITS),
            "has_stored": 1,  # else a read uses ``frac`` (the model's ``stored is None``)
            "fixed": 1,
            "width": 6,
        }
    )


def write_layout() -> data.StructLayout:
    """A register write: a ``prog`` beat."""
    return data.StructLayout({"addr": unsigned(16), "data": unsigned(REG_BITS)})


def decode_layout() -> data.StructLayout:
    """Beside the static command: the GEMM's descriptor tensors (``a``, ``b``, ``out``) and
    the host register it reads (a seed; a HOST_IN's exponent); an SGD's scalars: ``lr``
    the register of its lr's mantissa (then the lr's exponent, the decay's mantissa and
    exponent), ``mom`` the momentum's (then its exponent)."""
    t, r = unsigned(TENSOR_BITS), unsigned(REG_INDEX_BITS)
    return data.StructLayout({"reg": r, "a": t, "b": t, "out": t, "lr": r, "mom": r})


def field_at(op: Op, name: str) -> tuple[int, int]:
    """Bit offset and width of operand field ``name`` of ``op``'s records."""
    offset = HEADER.size * 8
    for n, code in FIELDS[op]:
        if n == name:
            return offset, struct.calcsize(code) * 8
        offset += struct.calcsize(code) * 8
    raise KeyError(f"{op.name} records have no field {name!r}")


@dataclass(frozen=True)
class RegisterMap:
    """The host registers of a program: ``seeds`` (a VEC's seed, or a GEMM's seed and
    block, to its register), the scalars (two registers each, mantissa and exponent, in
    the program's order, then ``momentum``) from ``scalar_base``, ``fracs`` (a HOST_IN's
    tensor index to its register)."""

    seeds: dict[tuple[int, ...], int]
    scalar_base: int
    scalar_names: tuple[str, ...]
    fracs: dict[int, int]
    sgd: bool

    @classmethod
    def of(cls, program: Program) -> RegisterMap:
        seeds: dict[tuple[int, ...], int] = {}
        for inst in program.instructions:
            if inst.op is Op.GEMM:
                seeds.setdefault((inst["seed"], inst["block"]), len(seeds))
            elif inst.op is Op.VEC:
                seeds.setdefault((inst["seed"],), len(seeds))
        names = (*program.scalars, "momentum")
        base = len(seeds)
        ins = dict.fromkeys(i["tensor"] for i in program.instructions if i.op is Op.HOST_IN)
        fracs = {t: base + 2 * len(names) + n for n, t in enumerate(ins)}
        sgd = any(i.op is Op.VEC and i.sub == VecOp.SGD for i in program.instructions)
        return cls(seeds, base, names, fracs, sgd)

    @property
    def size(self) -> int:
        return self.scalar_base + 2 * len(self.scalar_names) + len(self.fracs)

    def values(
        self, iteration: int, scalars: dict[str, float], fracs: dict[int, int]
    ) -> dict[int, int]:
        """Register -> 32-bit value for ``iteration``: its seeds, the host's ``scalars``
        and ``fracs`` (tensor index -> the exponent of what the host sends)."""
        out = {}
        for key, reg in self.seeds.items():
            seed = iteration_seed(key[0], iteration)
            out[reg] = block_seed(seed, key[1]) if len(key) == 2 else seed
        for n, name in enumerate(self.scalar_names):
            if name not in scalars and self.sgd:
                raise InputError(f"the program's SGD needs the host scalar {name!r}")
            mantissa, exp = encode_scalar(scalars.get(name, 0.0))
            out[self.scalar_base + 2 * n] = mantissa & 0xFFFFFFFF
            out[self.scalar_base + 2 * n + 1] = exp & 0xFFFFFFFF
        for t, reg in self.fracs.items():
            out[reg] = fracs[t] & 0xFFFFFFFF
        return out


def decoder_sizes(program: Program) -> dict[str, int]:
    """The decoder sized for ``program``: ``tensors`` (exponent entries) and ``registers``
    (:class:`RegisterMap`), as :class:`~.decoder.Decoder` and the device top take them."""
    return {"tensors": len(program.tensors), "registers": RegisterMap.of(program).size}


def check_fits(program: Program, tensors: int, registers: int) -> None:
    """Refuse a program whose tensors or host registers a decoder of ``tensors`` entries
    and ``registers`` registers cannot hold."""
    size = RegisterMap.of(program).size
    if size > FETCH_ADDR:
        raise InputError(
            f"the device program has {size} host registers; addresses from {FETCH_ADDR:#x} "
            "are the program fetcher's"
        )
    if len(program.tensors) > tensors or size > registers:
        raise InputError(
            f"the device program has {len(program.tensors)} tensors and {size} host "
            f"registers; the decoder holds {tensors} and {registers}"
        )


def exponent_writes(scales: ScaleTable, program: Program) -> dict[int, int]:
    """Register address -> value loading the exponent file from the model's ``scales``:
    four words a tensor (:class:`~.decoder.Decoder`), its exponents and statistics."""
    out = {}
    for i, t in enumerate(program.tensors):
        e = scales.entries[t["name"]]
        fields = {
            "frac": e.frac,
            "stored": 0 if e.stored is None else e.stored,
            "has_stored": int(e.stored is not None),
            "fixed": int(e.fixed),
            "width": e.width,
        }
        at = EXP_BASE + 4 * i
        out[at] = entry_layout().const(fields).as_value().value
        out[at + 1], out[at + 2] = e.peak, e.saturated
        out[at + 3] = e.overflow | int(e.written) << RAW_BITS
    return out


def read_address(tensor: int, word: int = 0) -> int:
    """The register address reading back word ``word`` of ``tensor``'s exponent entry."""
    return (EXP_BASE + 4 * tensor + word) | READ


def read_entry(word: int) -> dict[str, int | None]:
    """An entry's first word (:func:`entry_layout`) as the model's
    :class:`~barista_hw.device.scaling.Entry` fields: ``frac``, ``stored`` (None until
    memory was written), ``fixed``, ``width``."""
    out: dict[str, int | None] = {}
    for name, f in entry_layout():
        shape = Shape.cast(f.shape)
        v = (word >> f.offset) & ((1 << shape.width) - 1)
        out[name] = v - (1 << shape.width) if shape.signed and v >> (shape.width - 1) else v
    if not out.pop("has_stored"):
        out["stored"] = None
    return out


def exponent_entry(words: Sequence[int]) -> dict[str, Any]:
    """An entry's four words read back (:func:`exponent_writes`' layout) as the model's
    :class:`~barista_hw.device.scaling.Entry` fields (``exact``, the probe's, is 0)."""
    out: dict[str, Any] = read_entry(words[0])
    out["fixed"] = bool(out["fixed"])
    out["peak"], out["saturated"] = int(words[1]), int(words[2])
    out["overflow"] = int(words[3]) & ((1 << RAW_BITS) - 1)
    out["written"] = bool(int(words[3]) >> RAW_BITS)
    out["exact"] = 0.0
    return out


def static_command(
    inst: Instruction, program: Program, config: DeviceConfig, bus_bits: int = 16
) -> dict:
    """The :func:`~.device.command_layout` fields of ``inst`` its tables fix (the module
    docstring): exponents, seeds and host scalars all zero."""
    if inst.op in (Op.LOAD, Op.STORE, Op.GEMM):
        gemm = None
        if inst.op is Op.GEMM:
            rounding = Rounding(inst["mode"] & 3)
            gemm = GemmCommand(shift=0, rounding=rounding, images=inst["images"])
        return {"path": gemm_path.command(inst, program, config, gemm)}
    if inst.op is Op.VEC:
        if inst["desc"] == ON_C:
            raise InputError(f"{inst.text()}: the device top runs no epilogue on C")
        zeros = ScaleTable()
        for t in program.tensors:
            zeros.add(t["name"], 0, t["bits"])
        lanes = config.scratchpads.vector_lanes
        rnd = Rounder(Rounding(inst["rounding"]), 0, lanes)
        width = config.accelerator.engine.fmt.width
        scalars = dict.fromkeys((*program.scalars, "momentum"), 0.0)
        ring = vecmem.ring_depth(config)
        cmd = vecmem.command(
            inst, program, zeros, rnd=rnd, width=width, scalars=scalars, depth=ring
        )
        return {"vec": cmd}
    if inst.op in (Op.HOST_IN, Op.HOST_OUT):
        t = program.tensors[inst["tensor"]]
        if inst.op is Op.HOST_IN and t["bits"] != bus_bits:
            raise InputError(
                f"{inst.text()}: {t['name']!r} has {t['bits']}-bit elements; the decoder "
                f"takes the statistics of a HOST_IN of {bus_bits}-bit (bus word) elements"
            )
        return {"link": link.command(inst, program, bus_bits)}
    if inst.op in (Op.SCALE, Op.SYNC):
        return {}
    raise InputError(f"{inst.text()}: {inst.op.name} is not run by the device top yet")


def decode_fields(inst: Instruction, program: Program, regs: RegisterMap) -> dict:
    """The :func:`decode_layout` fields of ``inst``."""
    if inst.op is Op.GEMM:
        d = program.descriptors[inst["desc"]]
        index = {t["name"]: i for i, t in enumerate(program.tensors)}
        reg = regs.seeds[(inst["seed"], inst["block"])]
        return {"reg": reg, "a": index[d["a"]], "b": index[d["b"]], "out": index[d["out"]]}
    if inst.op is Op.VEC:
        fields = {"reg": regs.seeds[(inst["seed"],)]}
        if inst.sub == VecOp.SGD:
            fields["lr"] = regs.scalar_base + 2 * inst["param"]
            fields["mom"] = regs.scalar_base + 2 * (len(regs.scalar_names) - 1)
        return fields
    if inst.op is Op.HOST_IN:
        return {"reg": regs.fracs[inst["tensor"]]}
    return {}
