"""Verilator builds in the user's cache: a design and its C++ harness made into a library or binary.

A :class:`VerilatorBuild` names everything that goes into one build: the
sources (Verilog, Verilator control files, C++, headers) with their text, the top
module, the output file and the compiler and linker flags (``make_flags``: the optimisation
levels, :data:`MAKE_FLAGS` by default), and for gcc's profile-guided optimisation a
training run (``train``, ``train_files``). Its :meth:`~VerilatorBuild.key`
hashes all of it with the common flags below and the Verilator version, so
the cache entry ``<root>/<name>-<key>`` changes whenever the output could.

:func:`build` verilates and compiles in a temporary directory renamed into place
(:func:`barista_base.cache.atomic_directory`, so concurrent builders are safe; under
:func:`~barista_base.cache.entry_lock`, so the second waits for the first's build),
keeps only the output, and records its sha256 in a marker: an entry whose marker
is missing or whose output is missing or altered is discarded and rebuilt. The
Python driver's library (:mod:`sim.verilator_driver`) and the board simulator's
bridge (:mod:`boards.sim_board`) are both built this way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from barista_base.cache import atomic_directory, entry_lock
from barista_base.errors import log_tail

from .tools import X_POISON, SimulationError, simulator_version, tool_env, verilator_root

#: Verilator options: :data:`~sim.tools.X_POISON`, fast initial values (the design
#: initialises every register), no assertions (Amaranth emits none), warnings logged
#: but not fatal (linting is :mod:`sim.lint`'s job).
VERILATOR_FLAGS = [*X_POISON, "--x-initial", "fast", "--noassert", "-Wno-fatal"]
#: -O2 on the model: about twice the simulation speed of Verilator's default -Os for a
#: longer first build; the training loop runs a build many times.
MAKE_FLAGS = ["OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2"]
#: -O1: about half -O2's build for a few percent less speed (docs/testing.md), for models
#: whose runs are mostly short next to their build (the rtl backend's accelerator, the
#: simulated board's bridge).
LIGHT_MAKE_FLAGS = ("OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1")
#: gcc's profile-guided optimisation (:attr:`VerilatorBuild.train`): the instrumented
#: compile and link, then the compile that uses the profile (code the training run did not
#: reach is optimised as without one).
PGO_GENERATE = "-fprofile-generate -fprofile-update=single"
PGO_LINK = "USER_LDFLAGS=-fprofile-generate"
PGO_USE = "-fprofile-use -fprofile-partial-training -Wno-missing-profile"
MARKER = "build.json"
LOG = "build.log"


class VerilatorBuildError(SimulationError):
    """Verilating or compiling failed, or a built output cannot be used; the message says why
    (with the end of the build log when there is one)."""


@dataclass(frozen=True)
class VerilatorBuild:
    """One build: ``sources`` are ``(file name, text)`` in command-line order (headers,
    ``*.h``, are only written beside them); ``cflags`` get ``-I`` of the build directory."""

    name: str  # the cache entry's name before the key
    top: str  # Verilator's top module
    sources: tuple[tuple[str, str], ...]
    output: str  # the file Verilator's makefile links (``-o``)
    cflags: str = ""
    ldflags: str = ""
    options: tuple[str, ...] = ()  # Verilator options beyond VERILATOR_FLAGS (``--trace-fst``)
    make_flags: tuple[str, ...] = tuple(MAKE_FLAGS)  # the C++ compiler's (``OPT_FAST=...``)
    # gcc's profile-guided optimisation: with ``train`` (the output's arguments, run in a
    # directory of ``train_files``), compiled instrumented, run, compiled again.
    train: tuple[str, ...] = ()
    train_files: tuple[tuple[str, bytes], ...] = ()

    def key(self) -> str:
        """Hash of everything the output depends on."""
        h = hashlib.sha256()
        parts = [self.top, self.output, self.cflags, self.ldflags]
        parts += [json.dumps([*VERILATOR_FLAGS, *self.options, *self.make_flags])]
        parts += [simulator_version("verilator")]
        if self.train:  # (keys of builds without it as before)
            parts += [json.dumps([*self.train, PGO_GENERATE, PGO_LINK, PGO_USE])]
        for name, text in self.sources:
            parts += [name, text]
        for part in parts:
            h.update(part.encode() + b"\0")
        for name, data in self.train_files:
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()[:24]

    def entry(self, root: Path) -> Path:
        """The cache directory of this build under ``root``."""
        return root / f"{self.name}-{self.key()}"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def entry_ok(entry: Path) -> bool:
    """A complete cache entry: the marker present and the output's hash as it records."""
    try:
        marker = json.loads((entry / MARKER).read_text())
        return sha256_file(entry / marker["output"]) == marker["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def discard(entry: Path) -> None:
    """Move a broken entry out of the way (atomically), then delete it."""
    if not entry.exists():
        return
    trash = entry.with_name(f".{entry.name}.broken-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(entry, trash)
    except OSError:
        return  # another process moved it already
    shutil.rmtree(trash, ignore_errors=True)


def build(
    recipe: VerilatorBuild,
    root: Path,
    *,
    force: bool = False,
    on_build: Callable[[Path], None] | None = None,
) -> Path:
    """The built output of ``recipe`` (from the cache entry under ``root``, else built there).

    ``force`` discards the entry first (one that passed the checks but does not work).
    ``on_build(entry)`` is called when a build starts, and only then (not for a cached
    entry), so that a caller can say that this takes a while.
    A failed build raises :class:`VerilatorBuildError` with the end of its log, and
    keeps the log beside the entry as ``<entry>.failed.log``.
    """
    entry = recipe.entry(root)
    with entry_lock(entry):
        if force:
            discard(entry)
        if entry_ok(entry):
            return entry / recipe.output
        discard(entry)
        if on_build is not None:
            on_build(entry)
        with atomic_directory(entry) as tmp:
            _verilate_and_make(recipe, tmp, entry)
            marker = {"output": recipe.output, "sha256": sha256_file(tmp / recipe.output)}
            marker["top"] = recipe.top
            (tmp / MARKER).write_text(json.dumps(marker, indent=2))
    return entry / recipe.output


def _verilate_and_make(recipe: VerilatorBuild, tmp: Path, entry: Path) -> None:
    """Write the sources into ``tmp``, verilate, make, and leave only the output there."""
    files = []
    for name, text in recipe.sources:
        (tmp / name).write_text(text)
        if not name.endswith(".h"):
            files.append(str(tmp / name))
    obj = tmp / "obj"
    verilate = [str(verilator_root() / "bin" / "verilator"), "--cc", "--exe"]
    verilate += [*VERILATOR_FLAGS, *recipe.options, "--top-module", recipe.top]
    verilate += ["-Mdir", str(obj), "-o", recipe.output]
    verilate += ["-CFLAGS", f"{recipe.cflags} -I{tmp}".strip()]
    verilate += [*(["-LDFLAGS", recipe.ldflags] if recipe.ldflags else []), *files]
    jobs = str(min(4, os.cpu_count() or 1))
    # The wheel's verilated.mk leaves the "include precompiled header" option empty.
    make = ["make", "-C", str(obj), "-f", f"V{recipe.top}.mk", "-j", jobs]
    make += ["CFG_CXXFLAGS_PCH_I=-include"]
    log = tmp / LOG
    with log.open("w") as f:

        def step(cmd: list[str], cwd: Path | None = None) -> None:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            done = subprocess.run(
                cmd, stdout=f, stderr=subprocess.STDOUT, env=tool_env(), cwd=cwd, check=False
            )
            if done.returncode:
                keep = entry.with_name(f"{entry.name}.failed.log")
                shutil.copyfile(log, keep)
                raise VerilatorBuildError(
                    f"building {recipe.top} failed ({Path(cmd[0]).name} exit {done.returncode}); "
                    f"end of {keep}:\n{log_tail(log, 30)}"
                )

        step(verilate)
        if recipe.train:
            step([*make, *_profiled(recipe.make_flags, PGO_GENERATE), PGO_LINK])
            train = tmp / "train"  # the run's files, removed after it
            train.mkdir()
            for name, data in recipe.train_files:
                (train / name).write_bytes(data)
            step([str(obj / recipe.output), *recipe.train], cwd=train)
            shutil.rmtree(train)
            for built in [*obj.glob("*.[ao]"), *obj.glob("*.gch"), obj / recipe.output]:
                built.unlink()  # the profile (``*.gcda``) stays
            step([*make, *_profiled(recipe.make_flags, PGO_USE)])
        else:
            step([*make, *recipe.make_flags])
    os.replace(obj / recipe.output, tmp / recipe.output)
    shutil.rmtree(obj, ignore_errors=True)  # objects are large and never reused


def _profiled(make_flags: tuple[str, ...], extra: str) -> list[str]:
    """``make_flags`` with ``extra`` added to each optimisation variable (``OPT_*=``)."""
    return [f"{flag} {extra}" if flag.startswith("OPT_") else flag for flag in make_flags]
