"""The board link: wire format, UART divider, CLI errors, and the board top in Verilator through the simulated
transport (samples against the golden model, malformed frames answered with error frames, then recovery)."""

from __future__ import annotations

import argparse
import struct

import numpy as np
import pytest

from peforge.hw.board import BOARDS, QUEUE_DEPTH, REQUEST_MAGIC, BoardTop, Status, WireFormat, check_divider, crc8
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


# -- an independent host, written from docs/board.md alone: its own CRC-8, framing and receiver model ----------------

def _crc_table() -> list[int]:
    """CRC-8, polynomial x^8 + x^2 + x + 1, MSB first: the register after shifting each possible byte through."""
    table = []
    for value in range(256):
        for _ in range(8):
            value = ((value << 1) ^ (0x07 if value & 0x80 else 0)) & 0xFF
        table.append(value)
    return table


_CRC_TABLE = _crc_table()


def doc_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC_TABLE[crc ^ byte]
    return crc


QUIET = None    # in a sequence of requests: a silence of more than the timeout
REST = 1.25 * TIMEOUT


class DocLink:
    """The board's protocol as docs/board.md states it, for one network: frames both ways and the answers the
    receiver rules give any byte sequence."""

    def __init__(self, net, digest_hex: str):
        last = net.layers[-1]
        self.features, self.in_bits, self.in_signed = net.input.features, net.input.bits, net.input.signed
        self.classes, self.out_bits, self.out_signed = last.out_features, last.out_bits, last.out_signed
        self.digest = bytes.fromhex(digest_hex[:8])
        self.in_width, self.out_width = -(-self.in_bits // 8), -(-self.out_bits // 8)

    @staticmethod
    def _sealed(body: bytes) -> bytes:
        return body + bytes([doc_crc(body)])

    def header(self, count: int, features: int | None = None) -> bytes:
        f = self.features if features is None else features
        return bytes([0xA5, 0x5A, count & 0xFF, count >> 8, f & 0xFF, f >> 8])

    def sample(self, values) -> bytes:
        raw = b"".join((int(v) % (1 << 8 * self.in_width)).to_bytes(self.in_width, "little") for v in values)
        return self._sealed(raw)

    def values(self, raw: bytes) -> list[int]:
        """A sample's features as the board reads them: the low input-bits bits of each little-endian field."""
        out = []
        for k in range(self.features):
            v = int.from_bytes(raw[k * self.in_width:(k + 1) * self.in_width], "little") % (1 << self.in_bits)
            out.append(v - (1 << self.in_bits) if self.in_signed and v >> (self.in_bits - 1) else v)
        return out

    def result(self, logits) -> bytes:
        logits = [int(v) for v in logits]
        cls = logits.index(max(logits))
        body = bytes([0x5A, 0x00, cls]) + b"".join((v % (1 << 8 * self.out_width)).to_bytes(self.out_width, "little")
                                                   for v in logits)
        return self._sealed(body)

    def info(self) -> bytes:
        return self._sealed(bytes([0x5A, 0x10, self.features & 0xFF, self.features >> 8,
                                   self.in_bits | self.in_signed << 7, self.classes,
                                   self.out_bits | self.out_signed << 7]) + self.digest)

    def error(self, code: int, arg: int) -> bytes:
        return self._sealed(bytes([0x5A, code, arg]))

    def answers(self, parts, golden, *, refuse_sample=None, refuse_frame=None):
        """The answers, in order, to ``parts`` (byte strings sent back to back, :data:`QUIET` for a silence of more
        than the timeout), as ``[(answer bytes, index of the byte that decided it or None for a timeout)]``.
        ``golden(values)`` gives a sample's logits. ``refuse_sample = (n, arg)``: the n-th sample begun (from 0) is
        refused with ``5A 05 arg`` (an overrun: the board's state decides it, not the bytes); ``refuse_frame = n``:
        the n-th frame begun is refused with ``5A 05 01``."""
        out, state, index, begun_samples, begun_frames = [], "hunt", -1, 0, 0
        body, count, features, remaining = b"", 0, 0, 0

        def say(frame, at):
            out.append((frame, at))

        for part in parts:
            if part is QUIET:
                if state in ("h1", "h2", "h3", "h4", "h5"):
                    say(self.error(0x03, int(state[1]) + 1), None)
                elif state == "data":
                    say(self.error(0x03, 7), None)
                elif state == "check":
                    say(self.error(0x03, 8), None)
                state = "hunt"
                continue
            for byte in part:
                index += 1
                if state == "skip":
                    continue
                if state == "hunt":
                    if byte != 0xA5:
                        say(self.error(0x01, byte), index)
                        state = "skip"
                    elif refuse_frame is not None and begun_frames == refuse_frame:
                        say(self.error(0x05, 1), index)
                        state = "skip"
                    else:
                        begun_frames += 1
                        state = "h1"
                elif state == "h1":
                    if byte == 0x5A:
                        state = "h2"
                    else:
                        say(self.error(0x01, byte), index)
                        state = "skip"
                elif state == "h2":
                    count, state = byte, "h3"
                elif state == "h3":
                    count, state = count | byte << 8, "h4"
                elif state == "h4":
                    features, state = byte, "h5"
                elif state == "h5":
                    features |= byte << 8
                    if count == 0:
                        say(self.info(), index)
                        state = "hunt"
                    elif features != self.features:
                        say(self.error(0x02, 0x01), index)
                        state = "skip"
                    else:
                        remaining, body, state = count, b"", "data"
                elif state == "data":
                    if not body and refuse_sample is not None and begun_samples == refuse_sample[0]:
                        say(self.error(0x05, refuse_sample[1]), index)
                        state = "skip"
                        continue
                    if not body:
                        begun_samples += 1
                    body += bytes([byte])
                    if len(body) == self.features * self.in_width:
                        state = "check"
                elif state == "check":
                    if byte == doc_crc(body):
                        say(self.result(golden(self.values(body))), index)
                        remaining -= 1
                        body, state = b"", ("data" if remaining else "hunt")
                    else:
                        say(self.error(0x04, byte), index)
                        state = "skip"
        return out


def test_doc_model_agrees_with_the_wire_format(compiled):
    """Two implementations of docs/board.md, peforge's and the test's own, give the same bytes."""
    assert doc_crc(b"123456789") == 0xF4 and doc_crc(b"") == 0
    net, fmt = compiled.network, WireFormat.of(compiled)
    link = DocLink(net, compiled.digest())
    x = [net.input.range[0], -1, 0, 1, 2, net.input.range[1]]
    assert link.sample(x) == fmt.sample(x) and link.values(link.sample(x)[:-1]) == x
    assert link.header(3) == fmt.header(3)
    assert link.info() == fmt.info_payload() + bytes([crc8(fmt.info_payload())])
    logits = net.golden(np.array([x]))[0]
    frame = link.result(logits)
    assert fmt.decode_result(frame) == (int(np.argmax(logits)), logits.tolist())


def _send(board, link, parts) -> tuple[float, list]:
    """Write ``parts`` back to back (a silence of 1.25 timeouts for each QUIET, after the bytes before it went out);
    the simulated time the first byte began and, per byte sent, the time its stop bit ended."""
    bit = 10 / BAUD
    ends, start, line_free = [], None, board.now()
    for part in parts:
        if part is QUIET:
            board.wait(max(0.0, line_free - board.now()) + REST)
            continue
        begin = max(board.now(), line_free)
        start = begin if start is None else start
        board.write(part)
        ends += [begin + (k + 1) * bit for k in range(len(part))]
        line_free = begin + len(part) * bit
    return start, ends


def _read_frames(board, link) -> tuple[list[bytes], list[float]]:
    """Answer frames until none begins within :data:`REST` (each framed by its status byte, as the docs say), and
    the simulated time each began."""
    frames, began = [], []
    lengths = {0x00: len(link.result([0] * link.classes)), 0x10: len(link.info())}
    while True:
        head, times = board.read_timed(2, timeout=REST)
        if not head:
            return frames, began
        frames.append(head + board.read(lengths.get(head[1], 4) - 2, timeout=REST))
        began.append(times[0])


def _exchange(board, link, parts, golden, *, latencies=None, **refusals):
    """Send ``parts``, read exactly the answers docs/board.md gives them (every byte compared, frame by frame) and
    check that nothing more comes while the line rests (the receiver hunts again after it); each answer's latency
    (its first start bit after the end of the byte that decided it, and after the later of that and the end of the
    answer before it) is appended to ``latencies``."""
    expected = link.answers(parts, golden, **refusals)
    _, ends = _send(board, link, parts)
    total = sum(len(frame) for frame, _ in expected)
    data, began = board.read_timed(total, timeout=200 * TIMEOUT)
    got, offset, previous_end = [], 0, 0.0
    for frame, at in expected:
        got.append(data[offset:offset + len(frame)])
        if latencies is not None and at is not None and len(began) > offset:
            latencies.append((began[offset] - ends[at], began[offset] - max(ends[at], previous_end)))
        if len(began) >= offset + len(frame):
            previous_end = began[offset + len(frame) - 1] + 10 / BAUD
        offset += len(frame)
    assert [g.hex(" ") for g in got] == [f.hex(" ") for f, _ in expected]
    assert board.read(1, timeout=REST) == b""
    return expected


def test_board_sim_back_to_back(compiled):
    """Requests of every kind back to back, with no idle time between them, through the board top in Verilator:
    every answer byte as the independent model of docs/board.md says, in the order of the inputs."""
    net = compiled.network
    link = DocLink(net, compiled.digest())
    rng = np.random.default_rng(34)
    x = rng.integers(*net.input.range, size=(40, net.input.features), endpoint=True)
    x[0], x[1] = net.input.range[0], net.input.range[1]
    golden_rows = {tuple(row): logits for row, logits in zip(x.tolist(), net.golden(x).tolist())}

    def golden(values):
        return golden_rows[tuple(values)]

    s = [link.sample(row) for row in x]
    bad_crc = s[5][:-1] + bytes([s[5][-1] ^ 0x5A])
    info = link.header(0)
    latencies = []
    with host.simulated(compiled, clk_freq=CLK, baud=BAUD, timeout=TIMEOUT) as board:
        # info, samples, more infos, then a stray byte: every one answered, in order
        _exchange(board, link, [info + link.header(2) + s[0] + s[1] + info + info + link.header(1) + s[2] + b"\x37"],
                  golden, latencies=latencies)
        # a sample, an info request, then a wrong second magic byte
        _exchange(board, link, [link.header(1) + s[3] + info + b"\xa5\x00"], golden, latencies=latencies)
        # an info request and two samples, then a frame with the wrong features field
        _exchange(board, link, [info + link.header(2) + s[4] + s[6] + link.header(1, net.input.features + 1) + s[7]],
                  golden, latencies=latencies)
        # a corrupted check byte in the second of three samples: the first answered, then the checksum error
        _exchange(board, link, [link.header(3) + s[8] + bad_crc + s[9]], golden, latencies=latencies)
        # a silence between two samples (timeout, state 7), then at once an info request and a sample
        _exchange(board, link, [link.header(3) + s[10] + s[11], QUIET, info + link.header(1) + s[12]], golden,
                  latencies=latencies)
        # every timeout state: inside the header after 1 to 5 bytes, before a sample, inside one, before its check
        head = link.header(1)
        _exchange(board, link, [head[:1], QUIET, head[:2], QUIET, head[:3], QUIET, head[:4], QUIET, head[:5], QUIET,
                                head, QUIET, head + s[13][:2], QUIET, head + s[13][:-1], QUIET], golden)
        # more samples than the board can hold, back to back: the first ones answered, then the overrun
        flood = link.header(26) + b"".join(s[14:40])
        _send(board, link, [flood])
        frames, _ = _read_frames(board, link)
        refused = next(k for k, frame in enumerate(frames) if frame[1] != 0x00)
        assert refused >= 2                                                # both banks' samples at least
        expected = link.answers([flood], golden, refuse_sample=(refused, 0))
        assert [f.hex(" ") for f in frames] == [f.hex(" ") for f, _ in expected]
        # info requests faster than their answers go out: all answered until the queue is nearly full, then one
        # refusal, and the rest of the burst discarded
        many = info * 80
        _, ends = _send(board, link, [many])
        frames, began = _read_frames(board, link)
        infos = frames.index(link.error(0x05, 0x01))
        expected = link.answers([many], golden, refuse_frame=infos)
        assert [f.hex(" ") for f in frames] == [f.hex(" ") for f, _ in expected]
        assert QUEUE_DEPTH - 2 <= infos < 80
        # the refusal waits behind the answers queued before it: at most the queue's depth of info frames
        queued = began[infos] - ends[expected[infos][1]]
        assert queued < QUEUE_DEPTH * len(link.info()) * 10 / BAUD
        # and the board is at the host's service again
        _exchange(board, link, [info + link.header(2) + s[34] + s[35]], golden, latencies=latencies)
        assert board.framing_errors == 0
    # no answer waits longer than its decision, the answer before it and (a result) the accelerator need
    assert max(w for _, w in latencies) < 16 / BAUD                    # 16 bit times: the accelerator's latency
    print(f"answer latency after the deciding byte: {min(l for l, _ in latencies) * 1e6:.2f} .. "
          f"{max(l for l, _ in latencies) * 1e6:.2f} us; after it or the end of the answer before: at most "
          f"{max(w for _, w in latencies) * 1e6:.2f} us; the refusal behind {infos} info frames: {queued * 1e6:.1f} us")


class _ScriptedPort:
    """A transport whose board answers ``script`` (bytes, all available at once) and then nothing; reads that
    wait advance its clock."""

    def __init__(self, script: bytes):
        self.script, self.clock, self.written = bytearray(script), 0.0, bytearray()

    def write(self, data):
        self.written += data

    def read(self, n, timeout):
        data = bytes(self.script[:n])
        del self.script[:n]
        if len(data) < n:
            self.clock += timeout
        return data

    def wait(self, seconds):
        self.clock += seconds

    def now(self):
        return self.clock

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


def test_run_follows_the_answer_order(compiled):
    """The n-th answer after the info frame is sample n's: an error frame there, or no answer in time, ends the
    run with one line naming the sample."""
    net = compiled.network
    link = DocLink(net, compiled.digest())
    x = np.zeros((3, net.input.features), np.int64)
    logits = net.golden(x)[0]
    port = _ScriptedPort(link.info() + link.result(logits) + link.error(0x04, 0x33))
    with pytest.raises(host.BoardError, match=r"^Board must answer sample 1 with a result, not error frame 0x04 "
                                              r"\(sample checksum mismatch, arg 0x33\)$"):
        host.run(port, x)
    port = _ScriptedPort(link.info() + link.result(logits) + link.result(logits)[:7])
    with pytest.raises(host.BoardError, match=r"^Board must answer sample 1 within 0\.5 s, not 5a 00 "):
        host.run(port, x, timeout=0.5)
    assert port.clock == pytest.approx(0.5)          # one deadline for the whole frame
    with pytest.raises(ValueError, match=r"^Timeout must be a positive number of seconds, not 0$"):
        host.run(_ScriptedPort(b""), x, timeout=0)


@pytest.mark.parametrize("argv, code, message", [
    (["--timeout", "0.25"], 1, r"peforge board run: failed: Board must answer an info request within 0\.25 s, not "
                               r"nothing"),
    (["--timeout", "0"], 2, r"peforge board run: error: --timeout must be a positive number of seconds, not 0"),
])
def test_cli_run_never_waits_forever(tmp_path, monkeypatch, capsys, argv, code, message):
    """A board that does not answer: one line and exit 1 after the per-frame timeout; a bad --timeout: exit 2."""
    import re

    from peforge.cli import main

    monkeypatch.setattr(host, "SerialTransport", lambda port, baud: _ScriptedPort(b""))
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.int64))
    status = main(["board", "run", "--port", "/dev/ttyFAKE", "--input", str(tmp_path / "x.npy"), *argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == code and len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(message, lines[0]), lines[0]


def test_answer_queue_keeps_order_and_level():
    """The queue between receiver and transmitter (Amaranth simulator): pushed never when full, popped at random;
    every entry comes out once, in order, and ``level`` counts what it holds."""
    from amaranth.sim import Simulator

    from peforge.hw.board import AnswerQueue, Deframer

    dut = AnswerQueue(5)
    rng = np.random.default_rng(1)
    pushed, popped = [], []

    async def bench(ctx):
        held = 0
        for cycle in range(400):
            push = bool(rng.random() < 0.5) and held < 5
            code, arg = int(rng.integers(256)), int(rng.integers(256))
            ctx.set(dut.i.valid, push)
            ctx.set(dut.i.payload, {"code": code, "arg": arg})
            ctx.set(dut.o.ready, bool(rng.random() < 0.4))
            assert ctx.get(dut.level) == held
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                popped.append((ctx.get(dut.o.payload.code), ctx.get(dut.o.payload.arg)))
                held -= 1
            if push:
                assert ctx.get(dut.i.ready)
                pushed.append((code, arg))
                held += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(popped) > 100 and popped == pushed[:len(popped)]
    fmt = WireFormat(2, 8, False, 2, 8, False)
    with pytest.raises(ValueError, match=r"^Answer queue depth must be an integer of at least 4, not 3$"):
        Deframer(fmt, timeout=10, queue_depth=3)
    with pytest.raises(ValueError, match=r"^Answer queue depth must be an integer of at least 4, not 2$"):
        AnswerQueue(2)


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


def test_board_sim_runs_a_cnn_sent_as_torch_flattens_it():
    """A CNN's accelerator takes its input channels-last; the host sends a sample as torch flattens it (channel by
    channel) and the board's buffer reorders it: the logits are the golden ones, on a multi-channel input."""
    from peforge.sw.network import random_cnn

    network = next(n for n in (random_cnn(np.random.default_rng(s)) for s in range(40, 400))
                   if n.input.shape[0] > 1 and n.layers[0].kind == "conv2d" and n.input.features <= 64)
    compiled = CompiledNetwork.default(network)
    assert not np.array_equal(compiled.input_order(), np.arange(network.input.features))
    x = np.random.default_rng(5).integers(*network.input.range, size=(5, network.input.features), endpoint=True)
    with host.simulated(compiled, clk_freq=CLK, baud=BAUD, timeout=TIMEOUT) as board:
        result = host.run(board, x)
    assert np.array_equal(result.logits, network.golden(x))
