"""Fossil delta compression: `create` a delta that carries one byte string into
another, `apply` it; pure functions, no I/O.

The format is Fossil's (src/delta.c, www/delta_format.wiki), the one Centrifugo
sends with `delta: "fossil"` and the JavaScript SDK applies:

    <target length>\\n        header
    <count>@<offset>,        copy `count` bytes of the source from `offset`
    <count>:<bytes>          insert the next `count` bytes of the delta
    <checksum>;              trailer: a 32-bit checksum of the target

Every number is unsigned, written most significant digit first in Fossil's
base 64 (`0-9A-Z_a-z~`, no padding, zero is `0`). The checksum is the sum, modulo
2**32, of the target read as big-endian 32-bit words, a short last word padded
with zero bytes.

`create` follows the reference encoder step for step: a landmark hash table of
the source's 16-byte blocks (every 16th position, `len(source) // 16` buckets,
newer blocks first in a chain), a rolling hash over a 16-byte window of the
target, and at the first window position where some candidate block gives a
match worth a copy command (at least as long as the command's digits and
punctuation), the longest such match, extended forwards and backwards. Where the
references choose differently it takes the choices of centrifuge's Go encoder
(github.com/shadowspore/fossil-delta), whose source it was written against; the
tests hold it to deltas Fossil's C and the npm `fossil-delta` package made, and
`create` says where those two differ. Every reference's `apply` accepts each
other's deltas.

The format is byte-based: a copy may end or start inside a multi-byte UTF-8
character, so an insert may hold part of one and the delta need not be valid
UTF-8. `create(..., utf8_safe=True)` keeps every copy on character boundaries
of the target, so the delta of valid UTF-8 is valid UTF-8: what the JSON
protocol needs, where the delta travels as a JSON string and the SDK takes its
UTF-8 bytes back (centrifuge's Go escapes an invalid byte to U+FFFD there).
"""

from __future__ import annotations

import struct
from itertools import accumulate

__all__ = ["NHASH", "apply", "checksum", "create", "delta_worth_it"]

NHASH = 16
"""The width of the hash window and of the source's landmark blocks, in bytes."""

SEARCH_LIMIT = 249
"""How many landmark blocks of one hash bucket are tried at a window position:
249 as centrifuge's Go encoder (Fossil's C and the npm package try 250)."""

_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_VALUE = [-1] * 256
for _i, _c in enumerate(_DIGITS):
    _VALUE[_c] = _i
del _i, _c

_U32 = 0xFFFFFFFF


def _put_int(v: int) -> bytes:
    """`v` (0 <= v < 2**32) in Fossil's base 64."""
    if v < 64:
        return _DIGITS[v : v + 1]
    out = bytearray()
    while v:
        out.append(_DIGITS[v & 0x3F])
        v >>= 6
    out.reverse()
    return bytes(out)


def _digit_count(v: int) -> int:
    """How many base-64 digits `v` takes (1 for 0)."""
    n = 1
    limit = 64
    while v >= limit:
        n += 1
        limit <<= 6
    return n


def checksum(data: bytes) -> int:
    """Fossil's 32-bit checksum of `data`: its big-endian 32-bit words summed
    modulo 2**32, a short last word padded with zero bytes."""
    tail = len(data) % 4
    if tail:
        data = bytes(data) + b"\0" * (4 - tail)
    return sum(struct.unpack(f">{len(data) // 4}I", data)) & _U32


def _block_hash(data: bytes, start: int) -> int:
    """The rolling hash of data[start:start+16] as the reference computes it:
    a = the sum of the bytes, b = the sum of byte*(16 - its index), each modulo
    2**16; the value is a | b << 16 (bytes taken unsigned)."""
    window = data[start : start + NHASH]
    return (sum(window) & 0xFFFF) | ((sum(accumulate(window)) & 0xFFFF) << 16)


def _forward_match(src: bytes, x: int, out: bytes, y: int) -> int:
    """How many bytes src[x:] and out[y:] have in common at their start."""
    limit = min(len(src) - x, len(out) - y)
    if limit <= 0 or src[x] != out[y]:
        return 0
    # Galloping equal slices, then a binary search inside the first unequal one.
    lo, step = 1, 32
    while lo < limit:
        hi = min(lo + step, limit)
        if src[x + lo : x + hi] != out[y + lo : y + hi]:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if src[x + lo : x + mid] == out[y + lo : y + mid]:
                    lo = mid
                else:
                    hi = mid
            return lo
        lo = hi
        step <<= 1
    return limit


def _backward_match(src: bytes, x: int, out: bytes, y: int, limit: int) -> int:
    """How many bytes src[:x] and out[:y] have in common at their end, at most `limit`."""
    n = 0
    while n < limit and src[x - n - 1] == out[y - n - 1]:
        n += 1
    return n


def _is_continuation(data: bytes, i: int) -> bool:
    """Whether data[i] exists and is a UTF-8 continuation byte (0b10xxxxxx)."""
    return i < len(data) and 0x80 <= data[i] < 0xC0


def create(source: bytes, target: bytes, *, utf8_safe: bool = False) -> bytes:
    """A Fossil delta that `apply(source, delta)` turns into `target`.

    Always a valid delta, whatever the inputs; it may be longer than `target`
    (see `delta_worth_it`). A source of 16 bytes or fewer gives one insert of
    the whole target. Deterministic: the same inputs give the same delta.

    With `utf8_safe=False` the delta is byte-for-byte centrifuge's Go encoder's
    (by its source). Fossil's C encoder can differ on sources of non-ASCII bytes (it hashes
    `char`, signed on x86), the npm `fossil-delta` package on source lengths that
    are not a multiple of 16 (it takes ceil(len/16) hash buckets), and both when
    one bucket holds more than 249 blocks; the deltas differ, each applies to
    the same target.

    With `utf8_safe=True` each copy command is shortened, where needed, to start
    and end on character boundaries of `target` (the bytes it gives up go to the
    neighbouring inserts), so every insert holds whole characters: when
    `target` is valid UTF-8 the delta is too. Where no copy crosses a character
    boundary the delta is the same as without it.
    """
    src = bytes(source)
    out = bytes(target)
    len_src = len(src)
    len_out = len(out)
    parts: list[bytes] = [_put_int(len_out), b"\n"]

    if len_src <= NHASH:
        parts += [_put_int(len_out), b":", out, _put_int(checksum(out)), b";"]
        return b"".join(parts)

    # Landmarks: the hash of each whole 16-byte block of the source (the last
    # block only if a byte follows it), chained per bucket newest first.
    n_hash = len_src // NHASH
    landmark = [-1] * n_hash
    collide = [-1] * n_hash
    for block, start in enumerate(range(0, len_src - NHASH, NHASH)):
        hv = _block_hash(src, start) % n_hash
        collide[block] = landmark[hv]
        landmark[hv] = block

    base = 0  # the scan's start: all of out[:base] is accounted for, up to lit
    lit = 0  # where the pending literal starts (== base unless utf8_safe moved it)

    def copy(litsz: int, cnt: int, ofst: int) -> None:
        nonlocal base, lit
        start = base + litsz
        end = start + cnt
        if utf8_safe:
            trimmed = start
            while trimmed < end and _is_continuation(out, trimmed):
                trimmed += 1
            ofst += trimmed - start
            start = trimmed
            while end > start and _is_continuation(out, end):
                end -= 1
        if end > start:
            if start > lit:
                parts.extend((_put_int(start - lit), b":", out[lit:start]))
            parts.extend((_put_int(end - start), b"@", _put_int(ofst), b","))
            lit = end
            base = end
        else:  # nothing left to copy: the bytes join the pending literal
            base += litsz + cnt

    while base + NHASH < len_out:
        a = sum(out[base : base + NHASH]) & 0xFFFF
        b = sum(accumulate(out[base : base + NHASH])) & 0xFFFF
        i = 0  # the window is out[base+i : base+i+16]
        while True:
            best_cnt = best_ofst = best_litsz = 0
            block = landmark[(a | (b << 16)) % n_hash]
            tries = SEARCH_LIMIT
            y = base + i
            while block >= 0 and tries > 0:
                tries -= 1
                i_src = block * NHASH
                # The match around the window: forwards from its start, backwards
                # before it, not before base nor to the source's first byte.
                fwd = _forward_match(src, i_src, out, y) if src[i_src] == out[y] else 0
                limit = i_src - 1 if i_src <= i else i
                if limit > 0 and src[i_src - 1] == out[y - 1]:
                    back = _backward_match(src, i_src, out, y, limit)
                else:
                    back = 0
                cnt = fwd + back
                if cnt > best_cnt and cnt >= 4:  # 4: the smallest command's cost
                    ofst = i_src - back
                    litsz = i - back
                    size = _digit_count(litsz) + _digit_count(cnt) + _digit_count(ofst) + 3
                    if cnt >= size:
                        best_cnt, best_ofst, best_litsz = cnt, ofst, litsz
                block = collide[block]
            if best_cnt:
                copy(best_litsz, best_cnt, best_ofst)
                break
            if base + i + NHASH >= len_out:
                base = len_out  # no match to the end: the rest is literal
                break
            # Roll the window one byte on.
            old = out[base + i]
            a = (a - old + out[base + i + NHASH]) & 0xFFFF
            b = (b - NHASH * old + a) & 0xFFFF
            i += 1

    if lit < len_out:
        parts.extend((_put_int(len_out - lit), b":", out[lit:]))
    parts.extend((_put_int(checksum(out)), b";"))
    return b"".join(parts)


class _Reader:
    """A cursor over a delta that reads Fossil base-64 integers and operators."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def integer(self) -> int:
        data = self.data
        pos = start = self.pos
        v = 0
        while pos < len(data) and (d := _VALUE[data[pos]]) >= 0:
            v = (v << 6) | d
            pos += 1
            if v > _U32:
                raise ValueError(f"number at byte {start} does not fit in 32 bits")
        if pos == start:
            raise ValueError(f"number expected at byte {start}")
        self.pos = pos
        return v

    def char(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("delta ends before its checksum")
        c = self.data[self.pos]
        self.pos += 1
        return c


def apply(source: bytes, delta: bytes) -> bytes:
    """The target that `delta` makes of `source`.

    Raises ValueError if the delta is malformed (a missing or non-digit number,
    a number over 32 bits, an unknown operator, a copy not ended by `,`, a copy
    past the end of the source, an insert past the end of the delta, output
    beyond the header's length, no `;` trailer, bytes after it), if the output's
    length differs from the header's, or if its checksum differs from the
    trailer's (the delta was made from another source). Stricter than the
    reference appliers only on deltas none of their encoders makes (an empty
    number, a non-ASCII byte read as a digit, trailing bytes).
    """
    src = bytes(source)
    data = bytes(delta)
    reader = _Reader(data)
    size = reader.integer()
    if reader.char() != 0x0A:
        raise ValueError("target length not followed by a newline")
    pieces: list[bytes] = []
    total = 0
    while True:
        at = reader.pos
        if at == len(data):
            raise ValueError("delta ends before its checksum")
        cnt = reader.integer()
        op = reader.char()
        if op == 0x40:  # @ copy
            ofst = reader.integer()
            if reader.char() != 0x2C:
                raise ValueError(f"copy command at byte {at} not ended by ','")
            if ofst + cnt > len(src):
                raise ValueError(f"copy command at byte {at} reads past the end of the source")
            total += cnt
            if total > size:
                raise ValueError(f"copy command at byte {at} goes past the target length")
            pieces.append(src[ofst : ofst + cnt])
        elif op == 0x3A:  # : insert
            end = reader.pos + cnt
            if end > len(data):
                raise ValueError(f"insert command at byte {at} runs past the end of the delta")
            total += cnt
            if total > size:
                raise ValueError(f"insert command at byte {at} goes past the target length")
            pieces.append(data[reader.pos : end])
            reader.pos = end
        elif op == 0x3B:  # ; checksum
            if reader.pos != len(data):
                raise ValueError(f"{len(data) - reader.pos} bytes after the checksum")
            if total != size:
                raise ValueError(f"delta makes {total} bytes, its header says {size}")
            output = b"".join(pieces)
            if checksum(output) != cnt:
                raise ValueError("checksum mismatch: the delta was made from another source")
            return output
        else:
            raise ValueError(f"unknown operator {chr(op)!r} at byte {reader.pos - 1}")


def delta_worth_it(delta: bytes, target: bytes) -> bool:
    """Whether sending `delta` beats sending `target` itself: the delta is
    shorter (as centrifuge decides; an equal length sends the target)."""
    return len(delta) < len(target)
