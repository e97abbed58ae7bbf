"""The board link: wire format, UART divider, CLI errors, and the board top in Verilator through the simulated
transport (samples against the golden model, malformed frames answered with error frames, then recovery)."""

from __future__ import annotations

import argparse
import struct

import numpy as np
import pytest

from peforge.hw.board import BOARDS, REQUEST_MAGIC, BoardTop, Status, WireFormat, check_divider, crc8
from peforge.hw.network import CompiledNetwork
from peforge import board as host
from peforge.errors import UsageError
from peforge.sw.network import random_network

# one small network for every simulation here (one Verilator build): 6 features (5-bit signed inputs),
# 4 classes (27-bit signed logits, 4 bytes each on the wire)
CLK, BAUD, TIMEOUT = 12e6, 2_000_000, 400e-6


@pytest.fixture(scope="module")
def compiled():
    net = random_network(np.random.default_rng(6), max_features=8, schemes=["fixed"], depth=2)
    return CompiledNetwork.default(net)


# -- wire format ---------------------------------------------------------------------------------------------------

def test_crc8_check_value():
    # the published check value of CRC-8/SMBUS (poly 0x07, init 0) over "123456789"
    assert crc8(b"123456789") == 0xF4
    assert crc8(b"") == 0


def test_sample_and_header_bytes():
    fmt = WireFormat(3, 5, True, 2, 12, True)
    assert fmt.header(258) == bytes((0xA5, 0x5A, 0x02, 0x01, 0x03, 0x00))
    raw = bytes((0xFF, 0x0F, 0xF0))                     # -1, 15, -16 in two's complement bytes
    assert fmt.sample([-1, 15, -16]) == raw + bytes((crc8(raw),))
    wide = WireFormat(2, 12, False, 2, 12, True)
    assert wide.sample([0xABC, 1])[:4] == bytes((0xBC, 0x0A, 0x01, 0x00))


def test_decode_result_sign_extends():
    fmt = WireFormat(3, 5, True, 2, 12, True)
    body = bytes((0x5A, 0x00, 1)) + struct.pack("<hh", -300, 7)
    cls, logits = fmt.decode_result(body + bytes((crc8(body),)))
    assert (cls, logits) == (1, [-300, 7])
    with pytest.raises(ValueError, match=r"^Result frame must end with its CRC 0x[0-9a-f]{2}, not 0x[0-9a-f]{2}$"):
        fmt.decode_result(body + bytes((crc8(body) ^ 1,)))


def test_info_round_trip():
    fmt = WireFormat(300, 5, False, 10, 16, True, bytes.fromhex("01020304"))
    payload = fmt.info_payload()
    assert payload[:7] == bytes((0x5A, 0x10, 300 & 0xFF, 300 >> 8, 5, 10, 16 | 0x80))
    assert WireFormat.from_info(payload + bytes((crc8(payload),))) == fmt
    with pytest.raises(ValueError, match=r"^Info frame must be 12 bytes starting 5a 10 with a valid CRC, not "):
        WireFormat.from_info(payload + bytes((crc8(payload) ^ 0x80,)))


def test_wire_format_limits():
    with pytest.raises(ValueError, match=r"^Board classes must be an integer from 1 to 255, not 300$"):
        WireFormat(4, 8, False, 300, 16, True)


def test_divider():
    assert check_divider(25e6, 115200) == 217
    assert check_divider(12e6, 115200) == 104
    with pytest.raises(ValueError, match=r"^Baud rate must give at least 4 clock cycles per bit at 12 MHz "
                                         r"\(at most 3000000\), not 6000000$"):
        check_divider(12e6, 6_000_000)
    with pytest.raises(ValueError, match=r"^Baud rate must be within 2 % of clk_freq / round\(clk_freq / baud\), "
                                         r"not 2200000 \(9\.1 % off\)$"):
        check_divider(12e6, 2_200_000)


def test_board_top_errors(compiled):
    with pytest.raises(ValueError, match=r"^Board must be one of 'ulx3s-85f', 'icebreaker', not 'de10'$"):
        BoardTop(compiled, "de10")
    with pytest.raises(ValueError, match=r"^Baud rate must give at least 4 clock cycles per bit at 12 MHz"):
        BoardTop(compiled, "icebreaker", baud=4_000_000)
    assert set(BOARDS) == {"ulx3s-85f", "icebreaker"}


def test_overfull_log():
    log = "Info: Device utilisation:\nInfo: \t         ICESTORM_LC:  7210/  5280   136%\nInfo: \t        ICESTORM_RAM:     4/    30    13%\n"
    assert host._overfull(log) == "7210 ICESTORM_LC of 5280"
    assert host._overfull(log.replace("7210", "5000")) is None


# -- command line ----------------------------------------------------------------------------------------------------

def _parse(argv):
    parser = argparse.ArgumentParser(prog="peforge")
    host.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_errors(tmp_path):
    with pytest.raises(UsageError, match=r"^--input must be an existing \.npy file, not 'nope\.npy'$"):
        host.main(_parse(["board", "run", "--port", "/dev/null", "--input", "nope.npy"]))
    with pytest.raises(UsageError, match=r"^Compiled network .*compiled\.json must exist"):
        host.main(_parse(["board", "build", str(tmp_path), "--board", "icebreaker"]))
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.int64))
    with pytest.raises(UsageError, match=r"^--port must be a serial port that opens, not '/nonexistent/tty'"):
        host.main(_parse(["board", "run", "--port", "/nonexistent/tty", "--input", str(tmp_path / "x.npy")]))


# -- the board top in Verilator -----------------------------------------------------------------------------------

def _uart_bound(fmt: WireFormat) -> float:
    """Images/s the link allows: each sample's request and answer bytes, 10 bits each, on their own line."""
    return BAUD / 10 / max(fmt.sample_bytes, fmt.result_bytes)


def _expect_error(board, code: int, arg: int | None = None):
    answer = host.read_answer(board, None, timeout=10 * TIMEOUT)
    assert answer.status == code, f"expected error {code:#x}, got {answer.describe()}"
    if arg is not None:
        assert answer.arg == arg, answer.describe()
    board.wait(2 * TIMEOUT)                # the receiver discards until the line has been quiet


def test_board_sim_samples_and_malformed_frames(compiled):
    net = compiled.network
    rng = np.random.default_rng(3)
    x = rng.integers(*net.input.range, size=(14, net.input.features), endpoint=True)
    x[0], x[1] = net.input.range[0], net.input.range[1]           # the extremes of the input range
    golden = net.golden(x)
    fmt = WireFormat.of(compiled)
    with host.simulated(compiled, clk_freq=CLK, baud=BAUD, timeout=TIMEOUT) as board:
        info = host.query_info(board)
        assert (info.features, info.in_bits, info.in_signed) == (net.input.features, net.input.bits, net.input.signed)
        last = net.layers[-1]
        assert (info.classes, info.out_bits, info.out_signed) == (last.out_features, last.out_bits, last.out_signed)

        result = host.run(board, x[:4])
        assert np.array_equal(result.logits, golden[:4])
        assert np.array_equal(result.classes, np.argmax(golden[:4], axis=1))
        bound = _uart_bound(fmt)
        assert 0.6 * bound < result.images_per_s <= bound

        # wrong magic: one error frame naming the byte, the rest of the garbage ignored
        board.write(bytes((0x00, 0x11, 0xA5, 0x22)))
        _expect_error(board, Status.BAD_MAGIC, 0x00)
        assert np.array_equal(host.run(board, x[4:6]).logits, golden[4:6])

        # wrong length: the features field is not the network's
        board.write(fmt.header(1)[:4] + struct.pack("<H", net.input.features + 1) + fmt.sample(x[0]))
        _expect_error(board, Status.BAD_LENGTH, 1)
        assert np.array_equal(host.run(board, x[6:7]).logits, golden[6:7])

        # truncated frame: two samples announced, one and a half sent; the first is answered, then a timeout
        board.write(fmt.header(2) + fmt.sample(x[7]) + fmt.sample(x[8])[:3])
        first = host.read_answer(board, fmt, timeout=10 * TIMEOUT)
        assert first.status == Status.RESULT and list(first.logits) == golden[7].tolist()
        _expect_error(board, Status.TIMEOUT, 7)
        assert np.array_equal(host.run(board, x[9:10]).logits, golden[9:10])

        # a stray byte in the middle of a sample: its check byte no longer matches, nothing is computed
        sample = fmt.sample(x[10])
        stray = 0x3C
        corrupted = sample[:2] + bytes((stray,)) + sample[2:]
        received = corrupted[:len(sample) - 1]
        assert corrupted[len(sample) - 1] != crc8(received)         # the CRC of what the board reads
        board.write(fmt.header(2) + corrupted + fmt.sample(x[11]))
        _expect_error(board, Status.CHECKSUM, corrupted[len(sample) - 1])
        assert np.array_equal(host.run(board, x[12:14]).logits, golden[12:14])

        assert board.read(1, timeout=4 * TIMEOUT) == b""             # nothing left over
        assert board.framing_errors == 0
    assert REQUEST_MAGIC == bytes((0xA5, 0x5A))


def _digits_fixed():
    from peforge import digits

    trained = digits.build("fixed")
    return digits, trained.network, CompiledNetwork.default(trained.network), digits.load_split()


@pytest.mark.slow
def test_board_sim_digits_fixed():
    """All 360 digits test images through the board top at the ULX3S clock (25 MHz) and 8 cycles per bit
    (3.125 Mbaud: the simulation runs ~22k cycles/s, so 115200 baud would take ~40 min): exactly golden."""
    digits, network, compiled, split = _digits_fixed()
    golden = network.golden(split.x_test)
    baud = 3_125_000
    with host.simulated(compiled, clk_freq=25e6, baud=baud) as board:
        result = host.run(board, split.x_test, split.y_test)
    assert np.array_equal(result.logits, golden)
    assert result.accuracy == digits.accuracy(golden, split.y_test)
    line = baud / 10 / WireFormat.of(compiled).sample_bytes          # the request direction bounds the rate
    assert 0.9 * line < result.images_per_s <= line
    print(f"digits fixed, 360 images, simulated board at {baud} baud: {result.images_per_s:.1f} images/s, "
          f"accuracy {100 * result.accuracy:.2f} %")


@pytest.mark.slow
def test_board_sim_digits_fixed_115200():
    """The ULX3S link as built (25 MHz, 115200 baud, 217 cycles per bit): 16 images, exactly golden; the
    images/s of the real link."""
    digits, network, compiled, split = _digits_fixed()
    x = split.x_test[:16]
    with host.simulated(compiled, clk_freq=25e6, baud=115200) as board:
        result = host.run(board, x)
    assert np.array_equal(result.logits, network.golden(x))
    sample = WireFormat.of(compiled).sample_bytes * 10 / 115200                 # seconds per sample on the line
    answer = WireFormat.of(compiled).result_bytes * 10 / 115200
    assert len(x) * sample < result.seconds < len(x) * sample + answer + 1e-3  # 1 ms: the accelerator and the UARTs
    print(f"digits fixed, 16 images at 115200 baud: {result.images_per_s:.1f} images/s "
          f"({len(x)} / {result.seconds * 1e3:.2f} ms simulated)")


# -- the command line's one-line errors (issue 28) -------------------------------------------------------------------

def _fake_tools(tmp_path, monkeypatch, *, yosys: str, nextpnr: str = "exit 0"):
    """Stand-in tools for ``board build``: shell snippets run in the build directory instead of the YoWASP tools."""
    import os

    env = dict(os.environ, AMARANTH_USE_YOSYS="builtin", OPENFPGALOADER="true")
    for var, body in (("YOSYS", yosys), ("NEXTPNR_ICE40", nextpnr), ("ICEPACK", "exit 0")):
        tool = tmp_path / f"fake-{var.lower().replace('_', '-')}"
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
        env[var] = str(tool)
    monkeypatch.setattr(host, "_tool_env", lambda: env)


PROGRESS = r"\s*\[\s*[\d.]+s\] board build icebreaker: .*"


@pytest.mark.parametrize("case", ["tool fails", "does not fit"])
def test_cli_build_failure_is_one_line_naming_the_log(compiled, tmp_path, monkeypatch, capsys, case):
    import re

    from peforge.cli import main

    compiled.write(tmp_path / "acc")
    if case == "tool fails":
        _fake_tools(tmp_path, monkeypatch, yosys='echo "ERROR: fake yosys failed" >&2; exit 1')
        want = (1, rf"peforge board build: failed: Bitstream build for icebreaker stopped in yosys \(exit status 1\): "
                   rf"ERROR: fake yosys failed \(log {re.escape(str(tmp_path / 'out' / 'build.log'))}\)")
    else:
        (tmp_path / "tim").write_text("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:  7210/  5280   136%\n")
        _fake_tools(tmp_path, monkeypatch, yosys="exit 0",
                    nextpnr=f'cp {tmp_path / "tim"} board.tim; echo "ERROR: Unable to place cell" >&2; exit 1')
        want = (2, rf"peforge board build: error: Network {compiled.digest()} must fit the iCE40UP5K, not need 7210 "
                   rf"ICESTORM_LC of 5280 \(log {re.escape(str(tmp_path / 'out' / 'board.tim'))}\)")
    code = main(["board", "build", str(tmp_path / "acc"), "--board", "icebreaker", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == want[0] and "Traceback" not in err, err
    assert re.fullmatch(want[1], lines[-1]), lines[-1]
    assert all(re.fullmatch(PROGRESS, line) for line in lines[:-1]), err  # the tools print nothing themselves
    assert any("yosys: synthesis" in line for line in lines[:-1]), err
    if case == "does not fit":
        assert any("nextpnr-ice40: place and route" in line for line in lines[:-1]), err
        assert "Unable to place" in (tmp_path / "out" / "build.log").read_text()


@pytest.mark.parametrize("x, extra, message", [
    (np.zeros((2, 3), np.int64), [], r"--input {x}: Network input must have shape \(N, {features}\), not \(2, 3\)"),
    ("zero", [], r"--input {x} must hold at least one sample, not 0 \(shape \(0, {features}\)\)"),
    ("ok", ["--output", "{tmp}"], r"--output must be a \.npy file path, not the directory '{tmp}'"),
    ("ok", ["--labels", "{x}"], r"--labels must be an integer array of shape \(2,\) like the inputs, not int64 "
                                r"\(2, {features}\)"),
])
def test_cli_run_sim_checks_the_input_before_the_build(compiled, tmp_path, monkeypatch, capsys, x, extra, message):
    import re

    from peforge.cli import main

    def no_build(*_, **__):
        raise AssertionError("the input must be refused before the simulated board is built")

    monkeypatch.setattr(host, "simulated", no_build)
    compiled.write(tmp_path / "acc")
    features = compiled.network.input.features
    if isinstance(x, str):
        x = np.zeros((0 if x == "zero" else 2, features), np.int64)
    np.save(tmp_path / "x.npy", x)
    before = sorted(tmp_path.rglob("*"))
    fill = {"x": str(tmp_path / "x.npy"), "tmp": str(tmp_path), "features": features}
    code = main(["board", "run", "--sim", str(tmp_path / "acc"), "--input", str(tmp_path / "x.npy"),
                 *[a.format(**fill) for a in extra]])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    pattern = message.format(x=re.escape(fill["x"]), tmp=re.escape(fill["tmp"]), features=features)
    assert re.fullmatch(rf"peforge board run: error: {pattern}", lines[0]), lines[0]
    assert sorted(tmp_path.rglob("*")) == before
