"""Thin, typed ctypes wrappers over fwpuclnt.dll (the WFP management API). Windows only.

NOT YET RUN ON A REAL WINDOWS HOST: type-checked (``mypy --platform win32``); the structure
layouts it passes are checked on Linux (tests/windows/test_wfp_types.py). Every failure becomes
a ``SandboxError`` naming the call and the error code, here at the boundary.
"""

from __future__ import annotations

import sys

from ..errors import SandboxError

assert sys.platform == "win32"

import ctypes  # noqa: E402
from ctypes import c_uint32, c_uint64, c_void_p  # noqa: E402

from . import _wfp_types as t  # noqa: E402
from . import wfp  # noqa: E402

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

fwpuclnt = ctypes.WinDLL("fwpuclnt")
for _name in ("FwpmEngineOpen0", "FwpmEngineClose0", "FwpmTransactionBegin0",
              "FwpmTransactionCommit0", "FwpmTransactionAbort0", "FwpmSubLayerAdd0",
              "FwpmSubLayerDeleteByKey0", "FwpmFilterAdd0", "FwpmFilterDeleteByKey0",
              "FwpmFilterGetByKey0"):
    getattr(fwpuclnt, _name).restype = c_uint32  # DWORD error codes (0x8032xxxx)

RPC_C_AUTHN_WINNT = 10
FWP_E_FILTER_NOT_FOUND = 0x80320003
FWP_E_SUBLAYER_NOT_FOUND = 0x80320007
FWP_E_ALREADY_EXISTS = 0x80320009
FWP_E_IN_USE = 0x8032000A


def _check(code: int, what: str, ok: tuple[int, ...] = ()) -> None:
    if code and code not in ok:
        raise SandboxError(f"{what} failed: {ctypes.FormatError(code).strip()} "
                           f"(error {code:#010x})")


class Engine:
    """An open BFE session (FwpmEngineOpen0 … FwpmEngineClose0)."""

    __slots__ = ("handle",)

    def __init__(self) -> None:
        handle = c_void_p()
        _check(fwpuclnt.FwpmEngineOpen0(None, c_uint32(RPC_C_AUTHN_WINNT), None, None,
                                        ctypes.byref(handle)), "FwpmEngineOpen0")
        self.handle = handle

    def close(self) -> None:
        if self.handle.value:
            fwpuclnt.FwpmEngineClose0(self.handle)
            self.handle = c_void_p()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def add_sublayer(self) -> None:
        """ringfence's sublayer (persistent; already there is fine)."""
        sub = t.build_sublayer()
        _check(fwpuclnt.FwpmSubLayerAdd0(self.handle, ctypes.byref(sub), None),
               "FwpmSubLayerAdd0", (FWP_E_ALREADY_EXISTS,))

    def delete_sublayer(self) -> None:
        key = t.GUID.parse(wfp.SUBLAYER_KEY)
        _check(fwpuclnt.FwpmSubLayerDeleteByKey0(self.handle, ctypes.byref(key)),
               "FwpmSubLayerDeleteByKey0", (FWP_E_SUBLAYER_NOT_FOUND,))

    def add_filter(self, spec: wfp.FilterSpec, descriptors: dict[str, bytes]) -> int:
        """Add ``spec`` (its key must not exist yet); the filter's run-time id."""
        built = t.build_filter(spec, descriptors)
        fid = c_uint64()
        _check(fwpuclnt.FwpmFilterAdd0(self.handle, ctypes.byref(built.filter), None,
                                       ctypes.byref(fid)), f"FwpmFilterAdd0({spec.name})")
        return int(fid.value)

    def delete_filter(self, key: str) -> None:
        """Delete the filter ``key``; one that is already gone is fine."""
        guid = t.GUID.parse(key)
        _check(fwpuclnt.FwpmFilterDeleteByKey0(self.handle, ctypes.byref(guid)),
               f"FwpmFilterDeleteByKey0({key})", (FWP_E_FILTER_NOT_FOUND,))

    def has_filter(self, key: str) -> bool:
        guid = t.GUID.parse(key)
        out = c_void_p()
        code = fwpuclnt.FwpmFilterGetByKey0(self.handle, ctypes.byref(guid), ctypes.byref(out))
        if code == FWP_E_FILTER_NOT_FOUND:
            return False
        _check(code, f"FwpmFilterGetByKey0({key})")
        fwpuclnt.FwpmFreeMemory0(ctypes.byref(out))
        return True


class _Transaction:
    """``with engine.transaction():`` commits on success, aborts on any exception."""

    __slots__ = ("engine",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> Engine:
        _check(fwpuclnt.FwpmTransactionBegin0(self.engine.handle, c_uint32(0)),
               "FwpmTransactionBegin0")
        return self.engine

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            _check(fwpuclnt.FwpmTransactionCommit0(self.engine.handle),
                   "FwpmTransactionCommit0")
        else:
            fwpuclnt.FwpmTransactionAbort0(self.engine.handle)


def apply(specs: Iterable[wfp.FilterSpec], replace: Iterable[str] = ()) -> list[str]:
    """In one transaction: the sublayer, the filters in ``replace`` (earlier setups) and those
    of ``specs`` deleted, then ``specs`` added. The keys added, for the manifest."""
    from . import _win32 as w

    specs = list(specs)
    descriptors = {str(c.value): w.sd_from_sddl(str(c.value))
                   for s in specs for c in s.conditions if c.type == "sd"}
    with Engine() as engine, engine.transaction():
        engine.add_sublayer()
        for key in dict.fromkeys([*replace, *(s.key for s in specs)]):
            engine.delete_filter(key)
        for spec in specs:
            engine.add_filter(spec, descriptors)
    return [s.key for s in specs]


def remove(keys: Iterable[str]) -> None:
    """Delete the filters ``keys`` and then the sublayer (if nothing else of ours is in it)."""
    with Engine() as engine, engine.transaction():
        for key in keys:
            engine.delete_filter(key)
        engine.delete_sublayer()


def present(keys: Iterable[str]) -> list[tuple[str, bool]]:
    """``(key, present now)`` for each key."""
    with Engine() as engine:
        return [(key, engine.has_filter(key)) for key in keys]
