"""The ctypes layouts of the WFP structures (fwptypes.h / fwpmtypes.h) and the builder that turns
a ``wfp.FilterSpec`` into an ``FWPM_FILTER0``. The one place these layouts live.

Importable on any OS (no DLL is loaded here), so tests on Linux check every size and offset
against the documented x64 layout, and build real filters from real specs. Fixed-width ctypes
types only: ``wintypes.DWORD`` is 8 bytes on Linux.
"""

from __future__ import annotations

import ctypes
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64, c_void_p, c_wchar_p

from . import wfp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class GUID(ctypes.Structure):
    _fields_ = [("Data1", c_uint32), ("Data2", c_uint16), ("Data3", c_uint16),
                ("Data4", c_uint8 * 8)]

    @classmethod
    def parse(cls, text: str) -> GUID:
        import uuid

        return cls.from_buffer_copy(uuid.UUID(text).bytes_le)

    def text(self) -> str:
        import uuid

        return str(uuid.UUID(bytes_le=bytes(self)))


class FWP_BYTE_BLOB(ctypes.Structure):
    _fields_ = [("size", c_uint32), ("data", ctypes.POINTER(c_uint8))]


class _VALUE_UNION(ctypes.Union):
    """FWP_VALUE0's and FWP_CONDITION_VALUE0's union: small integers inline, the rest
    pointers (only the members ringfence uses are named; all are 8 bytes or less)."""

    _fields_ = [("uint8", c_uint8), ("uint16", c_uint16), ("uint32", c_uint32),
                ("uint64", ctypes.POINTER(c_uint64)), ("sd", ctypes.POINTER(FWP_BYTE_BLOB)),
                ("pointer", c_void_p)]


class FWP_VALUE0(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("type", c_uint32), ("u", _VALUE_UNION)]


class FWP_CONDITION_VALUE0(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("type", c_uint32), ("u", _VALUE_UNION)]


class FWPM_DISPLAY_DATA0(ctypes.Structure):
    _fields_ = [("name", c_wchar_p), ("description", c_wchar_p)]


class FWPM_FILTER_CONDITION0(ctypes.Structure):
    _fields_ = [("fieldKey", GUID), ("matchType", c_uint32),
                ("conditionValue", FWP_CONDITION_VALUE0)]


class FWPM_ACTION0(ctypes.Structure):
    """``type`` and the union of ``filterType`` / ``calloutKey`` (both GUIDs)."""

    _fields_ = [("type", c_uint32), ("filterType", GUID)]


class _CONTEXT_UNION(ctypes.Union):
    _fields_ = [("rawContext", c_uint64), ("providerContextKey", GUID)]


class FWPM_FILTER0(ctypes.Structure):
    _anonymous_ = ("context",)
    _fields_ = [
        ("filterKey", GUID), ("displayData", FWPM_DISPLAY_DATA0), ("flags", c_uint32),
        ("providerKey", ctypes.POINTER(GUID)), ("providerData", FWP_BYTE_BLOB),
        ("layerKey", GUID), ("subLayerKey", GUID), ("weight", FWP_VALUE0),
        ("numFilterConditions", c_uint32),
        ("filterCondition", ctypes.POINTER(FWPM_FILTER_CONDITION0)),
        ("action", FWPM_ACTION0), ("context", _CONTEXT_UNION),
        ("reserved", ctypes.POINTER(GUID)), ("filterId", c_uint64),
        ("effectiveWeight", FWP_VALUE0),
    ]


class FWPM_SUBLAYER0(ctypes.Structure):
    _fields_ = [("subLayerKey", GUID), ("displayData", FWPM_DISPLAY_DATA0),
                ("flags", c_uint32), ("providerKey", ctypes.POINTER(GUID)),
                ("providerData", FWP_BYTE_BLOB), ("weight", c_uint16)]


class BuiltFilter:
    """An FWPM_FILTER0 and every buffer it points into (kept alive together)."""

    __slots__ = ("filter", "keep")

    def __init__(self, filter: FWPM_FILTER0, keep: list[Any]) -> None:
        self.filter = filter
        self.keep = keep


def build_filter(spec: wfp.FilterSpec, descriptors: dict[str, bytes]) -> BuiltFilter:
    """``spec`` as an FWPM_FILTER0. ``descriptors``: SDDL → self-relative security descriptor
    bytes (``_win32.sd_from_sddl`` on Windows) for the ``sd`` conditions."""
    keep: list[Any] = []
    conds = (FWPM_FILTER_CONDITION0 * len(spec.conditions))()
    for i, cond in enumerate(spec.conditions):
        c = conds[i]
        c.fieldKey = GUID.parse(wfp.FIELDS[cond.field])
        c.matchType = wfp.MATCH[cond.match]
        c.conditionValue.type = wfp.DATA_TYPES[cond.type]
        if cond.type == "sd":
            raw = descriptors[str(cond.value)]
            buf = (c_uint8 * len(raw)).from_buffer_copy(raw)
            blob = FWP_BYTE_BLOB(len(raw), ctypes.cast(buf, ctypes.POINTER(c_uint8)))
            keep += [buf, blob]
            c.conditionValue.sd = ctypes.pointer(blob)
        else:
            setattr(c.conditionValue, cond.type, int(cond.value))
    keep.append(conds)
    f = FWPM_FILTER0()
    f.filterKey = GUID.parse(spec.key)
    f.displayData.name = spec.name
    f.displayData.description = f"ringfence: {spec.rule}"
    f.flags = wfp.FILTER_FLAG_PERSISTENT
    f.layerKey = GUID.parse(spec.layer_key)
    f.subLayerKey = GUID.parse(wfp.SUBLAYER_KEY)
    f.weight.type = wfp.DATA_TYPES["uint8"]
    f.weight.uint8 = spec.weight
    f.numFilterConditions = len(spec.conditions)
    f.filterCondition = ctypes.cast(conds, ctypes.POINTER(FWPM_FILTER_CONDITION0))
    f.action.type = wfp.ACTIONS[spec.action]
    return BuiltFilter(f, keep)


def build_sublayer() -> FWPM_SUBLAYER0:
    s = FWPM_SUBLAYER0()
    s.subLayerKey = GUID.parse(wfp.SUBLAYER_KEY)
    s.displayData.name = wfp.SUBLAYER_NAME
    s.displayData.description = "filters ringfence windows setup adds for the sandbox users"
    s.flags = wfp.SUBLAYER_FLAG_PERSISTENT
    s.weight = wfp.SUBLAYER_WEIGHT
    return s
