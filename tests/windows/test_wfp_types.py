"""The ctypes layouts of the WFP structures against the documented x64 layout (fwptypes.h,
fwpmtypes.h; sizes as MSVC lays them out: FWPM_FILTER0 is 200 bytes, filterId at 176), and a
filter built from a real spec read back field by field. ctypes structures need no DLL, so this
runs on Linux; the Windows-only layer (_wfp.py) passes exactly these structures."""

from __future__ import annotations

import ctypes
import uuid

import pytest

from ringfence.windows import _wfp_types as t
from ringfence.windows.plan import firewall_rules
from ringfence.windows.wfp import filter_specs
from tests.windows.world import INSTALL_ID, OFFLINE

pytestmark = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8,
                                reason="the documented layout is the 64-bit one")

LAYOUT = {
    t.GUID: (16, {"Data1": 0, "Data2": 4, "Data3": 6, "Data4": 8}),
    t.FWP_BYTE_BLOB: (16, {"size": 0, "data": 8}),
    t.FWP_VALUE0: (16, {"type": 0, "u": 8}),
    t.FWP_CONDITION_VALUE0: (16, {"type": 0, "u": 8}),
    t.FWPM_DISPLAY_DATA0: (16, {"name": 0, "description": 8}),
    t.FWPM_FILTER_CONDITION0: (40, {"fieldKey": 0, "matchType": 16, "conditionValue": 24}),
    t.FWPM_ACTION0: (20, {"type": 0, "filterType": 4}),
    t.FWPM_SUBLAYER0: (72, {"subLayerKey": 0, "displayData": 16, "flags": 32,
                            "providerKey": 40, "providerData": 48, "weight": 64}),
    t.FWPM_FILTER0: (200, {
        "filterKey": 0, "displayData": 16, "flags": 32, "providerKey": 40, "providerData": 48,
        "layerKey": 64, "subLayerKey": 80, "weight": 96, "numFilterConditions": 112,
        "filterCondition": 120, "action": 128, "context": 152, "reserved": 168,
        "filterId": 176, "effectiveWeight": 184}),
}


@pytest.mark.parametrize("struct", list(LAYOUT), ids=lambda s: s.__name__)
def test_size_and_offsets(struct: type[ctypes.Structure]) -> None:
    size, offsets = LAYOUT[struct]
    assert ctypes.sizeof(struct) == size
    got = {name: getattr(struct, name).offset for name in offsets}
    assert got == offsets
    assert ctypes.alignment(struct) == (4 if struct in (t.GUID, t.FWPM_ACTION0) else 8)


def test_guid_bytes_are_little_endian_fields() -> None:
    g = t.GUID.parse("c38d57d1-05a7-4c33-904f-7fbceee60e82")
    assert bytes(g).hex() == "d1578dc3a705334c904f7fbceee60e82"
    assert g.text() == "c38d57d1-05a7-4c33-904f-7fbceee60e82"


def test_a_built_filter_reads_back_as_its_spec() -> None:
    specs = filter_specs(firewall_rules("off", OFFLINE, proxy_port=8123), INSTALL_ID)
    sd = b"\x01\x00\x04\x80fake-self-relative-sd"
    for spec in specs:
        built = t.build_filter(spec, {f"O:LSD:(A;;CC;;;{OFFLINE})": sd})
        raw = bytes(built.filter)
        f = t.FWPM_FILTER0.from_buffer_copy(raw)
        assert raw[0:16] == uuid.UUID(spec.key).bytes_le
        assert raw[64:80] == uuid.UUID(spec.layer_key).bytes_le
        assert f.subLayerKey.text() == "47001da6-5251-4191-bcb8-1b95ab07857a"
        assert f.flags == 1  # FWPM_FILTER_FLAG_PERSISTENT
        assert (f.weight.type, f.weight.uint8) == (1, spec.weight)
        assert int.from_bytes(raw[128:132], "little") == (
            0x1002 if spec.action == "permit" else 0x1001)
        assert f.displayData.name == spec.name
        assert not f.providerKey and not f.reserved and f.filterId == 0
        assert f.numFilterConditions == len(spec.conditions)
        for i, cond in enumerate(spec.conditions):
            c = f.filterCondition[i]
            assert c.fieldKey.text() == {
                "ALE_USER_ID": "af043a0a-b34d-4f86-979c-c90371af6e66",
                "IP_PROTOCOL": "3971ef2b-623e-4f9a-8cb1-6e79b806b9a7",
                "IP_REMOTE_PORT": "c35a604d-d22b-4e1a-91b4-68f674ee674b",
                "FLAGS": "632ce23b-5167-435c-86d7-e903684aa80c"}[cond.field]
            value = c.conditionValue
            if cond.type == "sd":
                assert (c.matchType, value.type) == (0, 14)
                blob = value.sd.contents
                assert ctypes.string_at(blob.data, blob.size) == sd
            else:
                assert value.type == {"uint8": 1, "uint16": 2, "uint32": 3}[cond.type]
                assert getattr(value, cond.type) == cond.value
                assert c.matchType == (6 if cond.field == "FLAGS" else 0)


def test_sublayer() -> None:
    s = t.build_sublayer()
    assert s.subLayerKey.text() == "47001da6-5251-4191-bcb8-1b95ab07857a"
    assert (s.flags, s.weight) == (1, 0x8000)
