"""Parameter validation, derived values, elaboration and lint of the dot-product PEs."""

import dataclasses
import json
import re

import pytest
from amaranth import signed
from amaranth.lib import data, stream, wiring

from peforge.hw.fixed_mac import FixedMac, FixedMacParams
from peforge.hw.sp2_mac import SP2Mac, SP2MacParams
from peforge.hw.verilog import lint, write_design
from peforge.hw import registry
from peforge.sw.sp2 import SP2Format


def brute_acc_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding lo..hi, by search (independent of sw.intops)."""
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


@pytest.mark.parametrize("act_bits, act_signed, bits, m1, max_len", [
    (8, True, 4, 2, 4096), (8, False, 4, 2, 4096), (1, False, 4, 3, 1), (16, True, 6, 3, 1000),
])
def test_sp2_acc_bits(act_bits, act_signed, bits, m1, max_len):
    p = SP2MacParams(act_bits=act_bits, act_signed=act_signed, fmt=SP2Format(bits, m1), max_len=max_len)
    E = 2 ** m1 - 1
    t = lambda e: 0 if e == 0 else 2 ** (E - e)
    vmax = t(1) + (t(1) if bits - 1 - m1 > 0 else 0)
    amax = 2 ** (act_bits - 1) if act_signed else 2 ** act_bits - 1
    assert p.acc_bits == brute_acc_bits(-amax * vmax * max_len, amax * vmax * max_len)


def test_acc_bits_reference_config():
    # The benchmark lane: 8-bit signed acts, 4-bit SP2 (|v| <= 8), 4096 elements: |y| <= 2^22
    assert SP2MacParams(lanes=1, act_bits=8, fmt=SP2Format(4, 2), max_len=4096).acc_bits == 24
    # fixed 8x8 signed: (-128)(-128) * 4096 = 2^26 needs 28 bits
    assert FixedMacParams(lanes=1, act_bits=8, w_bits=8, max_len=4096).acc_bits == 28


@pytest.mark.parametrize("kwargs, kind, message", [
    ({"lanes": 0}, ValueError, r"^Lanes must be an integer from 1 to 256, not 0$"),
    ({"lanes": 2.0}, TypeError, r"^Lanes must be an integer, not 2\.0$"),
    ({"act_bits": 0}, ValueError, r"^Activation bits \(act_bits\) must be an integer from 1 to 32, not 0$"),
    ({"act_signed": 1}, TypeError, r"^Signed activations \(act_signed\) must be a bool, not 1$"),
    ({"max_len": 0}, ValueError, r"^Maximum vector length \(max_len\) must be an integer from 1 to 16777216, not 0$"),
    ({"fmt": 4}, TypeError, r"^SP2 format \(fmt\) must be an SP2Format, not 4$"),
    ({"act_bits": 32, "fmt": SP2Format(8, 4), "max_len": 1 << 24}, ValueError,
     r"^Accumulator width must be at most 62 bits, not 72 "),
])
def test_sp2_params_errors(kwargs, kind, message):
    with pytest.raises(kind, match=message):
        SP2MacParams(**kwargs)


def test_fixed_params_errors():
    with pytest.raises(TypeError, match=r"^DSP use \(dsp\) must be a bool, not 'yes'$"):
        FixedMacParams(dsp="yes")
    with pytest.raises(ValueError, match=r"^Lanes must be an integer from 1 to 256, not 257$"):
        FixedMacParams(lanes=257)


def test_shared_fields_declared_once():
    # act_bits, act_signed, max_len, lanes and dsp carry one Spec (subject, range, doc) in every PE
    from peforge.hw import dot
    from peforge.hw.nm_sparse import NMSparseParams

    specs = {"lanes": dot.LANES, "act_bits": dot.ACT_BITS, "act_signed": dot.ACT_SIGNED, "max_len": dot.MAX_LEN,
             "dsp": dot.DSP}
    for cls in (SP2MacParams, FixedMacParams, NMSparseParams):
        for f in dataclasses.fields(cls):
            if f.name in specs:
                assert f.metadata["spec"] is specs[f.name] and f.metadata["doc"] == specs[f.name].doc


@pytest.mark.parametrize("params", [SP2MacParams(lanes=3, act_bits=5), FixedMacParams(max_len=9)])
def test_output_layout_and_signatures(params):
    # o carries a struct with y at the LSBs: the same bits as the bare accumulator
    assert params.output_layout == data.StructLayout({"y": signed(params.acc_bits)})
    assert params.output_layout.size == params.acc_bits
    assert params.i_signature == stream.Signature(params.input_layout)
    assert params.o_signature == stream.Signature(params.output_layout)
    pe = SP2Mac(params) if isinstance(params, SP2MacParams) else FixedMac(params)
    assert pe.signature.members["i"] == wiring.In(params.i_signature)
    assert pe.signature.members["o"] == wiring.Out(params.o_signature)


def test_json_round_trip_and_settings():
    p = SP2MacParams(lanes=3, act_signed=False, fmt=SP2Format(6, 3), max_len=77)
    assert SP2MacParams.from_json(p.to_json()) == p
    q = SP2MacParams().with_settings({"lanes": "3", "act_signed": "false", "fmt.bits": "6",
                                      "fmt.m1": "3", "max_len": "77"})
    assert q == p
    assert q.digest() == p.digest() and q.digest() != SP2MacParams().digest()
    with pytest.raises(ValueError, match=r"^Parameter 'width' is not a parameter of SP2MacParams; allowed: lanes, "):
        SP2MacParams().with_settings({"width": "3"})
    with pytest.raises(ValueError, match=r"^Parameter 'lanes' must be an integer, not 'many'$"):
        SP2MacParams().with_settings({"lanes": "many"})


def test_component_type_check():
    with pytest.raises(TypeError, match=r"^SP2Mac params must be SP2MacParams, not "):
        SP2Mac(FixedMacParams())
    with pytest.raises(TypeError, match=r"^FixedMac params must be FixedMacParams, not "):
        FixedMac(SP2MacParams())


LINT_GRID = [
    ("sp2-mac", SP2MacParams(lanes=1, fmt=SP2Format(4, 2))),
    ("sp2-mac", SP2MacParams(lanes=5, act_signed=False, fmt=SP2Format(4, 3), max_len=3)),
    ("sp2-mac", SP2MacParams(lanes=16, act_bits=4, fmt=SP2Format(8, 4))),
    ("sp2-mac", SP2MacParams(lanes=2, act_bits=1, act_signed=False, fmt=SP2Format(2, 1), max_len=1)),
    ("fixed-mac", FixedMacParams(lanes=1, w_bits=2, dsp=False)),
    ("fixed-mac", FixedMacParams(lanes=16, w_bits=8, act_signed=False)),
    ("fixed-mac", FixedMacParams(lanes=3, act_bits=16, w_bits=16, dsp=False, max_len=5)),
]


@pytest.mark.parametrize("name, params", LINT_GRID, ids=lambda x: getattr(x, "digest", lambda: x)())
def test_generate_and_lint(tmp_path, name, params):
    pe = registry.get(name)
    manifest = write_design(pe, params, tmp_path)
    assert json.loads((tmp_path / f"{pe.top}.json").read_text()) == manifest
    assert manifest["derived"]["acc_bits"] == params.acc_bits
    ports = manifest["ports"]
    assert ports["o__payload"]["width"] == params.acc_bits
    assert ports["i__payload"]["width"] == params.lanes * (params.act_bits + params.weight_bits) + 1
    text = (tmp_path / f"{pe.top}.v").read_text()
    assert re.search(rf"^module {pe.top}\(", text, re.M)
    assert "/work/" not in text  # no absolute source paths
    lint(tmp_path / f"{pe.top}.v", pe.top)
