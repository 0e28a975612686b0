"""Fossil deltas (server/protocol/fossil.py): byte-exact against deltas the
reference encoders made, round trips on bytes and on UTF-8 text, and every way
`apply` refuses a malformed delta.

The reference deltas below were made by Fossil 2.21 (`fossil test-delta-create`,
the C encoder, x86_64) and by the npm package fossil-delta 2.0.0; where a vector
says "both", both made exactly that delta.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
from wsfan.protocol.fossil import apply, checksum, create, delta_worth_it

DOC = (
    b'{"user":"alice","score":41,"items":[1,2,3],'
    b'"note":"the quick brown fox jumps over the lazy dog"}'
)  # 96 bytes: a multiple of 16, where the npm package's hash table agrees
CYRILLIC = (
    '{"имя":"Алиса","город":"Москва","статус":"в сети 😀",'
    '"заметка":"съешь же ещё этих мягких французских булок"}'
).encode()
CYRILLIC_EDITED = CYRILLIC.replace("в сети".encode(), "не в сети".encode())

# (source, target, delta) that Fossil's C encoder and the npm package both made.
REFERENCE_VECTORS = {
    "empty source": (b"", b'{"a":1}', b'7\n7:{"a":1}2qKytY;'),
    "empty target": (DOC, b"", b"0\n0;"),
    "identical": (DOC, DOC, b"1W\n1W@0,yGvvP;"),
    "small change": (DOC, DOC.replace(b"41", b"42"), b"1W\nP@0,1:216@Q,yHAvP;"),
    "appended": (
        DOC,
        DOC[:-1] + b',"more":"appended at the end of it"}',
        b'23\n1V@0,_:,"more":"appended at the end of it"}1nQGXj;',
    ),
    "different": (
        DOC,
        b'{"completely":"different content, nothing in common","n":[9,8,7,6,5]}',
        b'15\n15:{"completely":"different content, nothing in common","n":[9,8,7,6,5]}3N6KGT;',
    ),
    "cyrillic": (CYRILLIC, CYRILLIC_EDITED, b"2x\n14@0,4:\xbd\xd0\xb5 1p@13,WXp96;"),
}


@pytest.mark.parametrize(
    ("source", "target", "delta"), REFERENCE_VECTORS.values(), ids=list(REFERENCE_VECTORS)
)
def test_create_makes_the_reference_encoders_delta(
    source: bytes, target: bytes, delta: bytes
) -> None:
    assert create(source, target) == delta


@pytest.mark.parametrize(
    ("source", "target", "delta"), REFERENCE_VECTORS.values(), ids=list(REFERENCE_VECTORS)
)
def test_apply_turns_the_source_into_the_target_with_a_reference_delta(
    source: bytes, target: bytes, delta: bytes
) -> None:
    assert apply(source, delta) == target


def test_apply_takes_the_npm_packages_delta_where_its_hash_table_size_differs() -> None:
    # A 27-byte source: the npm package takes ceil(27/16) = 2 buckets, the others 1.
    source, target = b"dog dog the then runs over", b"dog dog the runs runs over"
    npm_delta = b"Q\nQ:dog dog the runs runs over2dlOQs;"
    assert create(source, target) == b"Q\nC@0,E:runs runs over2dlOQs;"  # Fossil's C made this too
    assert apply(source, npm_delta) == target


def test_apply_takes_fossils_delta_where_its_signed_char_hash_differs() -> None:
    # Fossil's C hashes `char`, signed on x86: other buckets for bytes over 0x7f.
    source = "булок съешь съешь дом дом же".encode()
    target = "булок же съешь дом дом же".encode()
    head = "i\nF:булок же".encode()
    fossil_delta = head + b"C@A,I:" + "дом дом же".encode() + b"2pFLCZ;"
    assert create(source, target) == head + b"U@L,2pFLCZ;"  # the npm package's too
    assert apply(source, fossil_delta) == target


def test_create_tries_249_blocks_of_a_hash_bucket_as_centrifuges_go_encoder() -> None:
    # 500 equal blocks share a bucket: Go stops after 249, Fossil's C and npm after 250.
    source = b"abcdefghijklmnop" * 500
    target = b"X" + source[:6000] + b"Y"
    fossil_and_npm = b"1Tn\n1:Xzl@zG,V0@1U0,1:Y3EGCSx;"
    assert create(source, target) == b"1Tn\n1:XzW@zW,VG@1Tl,1:Y3EGCSx;"
    assert apply(source, fossil_and_npm) == target


# ---------------------------------------------------------------------------
# The format's pieces


def test_checksum_sums_big_endian_words_with_a_zero_padded_last_word() -> None:
    assert checksum(b"") == 0
    assert checksum(b"\x01\x02\x03\x04\x05") == 0x01020304 + 0x05000000
    assert checksum(b"\xff\xff\xff\xff\x00\x00\x00\x02") == 1  # modulo 2**32


@pytest.mark.parametrize(
    ("length", "digits"),
    [(0, b"0"), (9, b"9"), (10, b"A"), (36, b"_"), (37, b"a"), (63, b"~"), (64, b"10")],
)
def test_the_target_length_is_written_in_fossils_base_64(length: int, digits: bytes) -> None:
    assert create(b"", b"x" * length).split(b"\n", 1)[0] == digits


def test_a_source_of_16_bytes_or_fewer_gives_one_insert_of_the_whole_target() -> None:
    source = b"0123456789abcdef"
    delta = create(source, source)
    assert delta.startswith(b"G\nG:0123456789abcdef")
    assert delta.endswith(b";")
    assert b"@" not in delta


def test_an_identical_2_kb_document_is_one_copy_command() -> None:
    doc = document(35)
    delta = create(doc, doc)
    assert delta.count(b"@") == 1
    assert b":" not in delta.split(b"\n", 1)[1]


def test_a_small_change_to_a_2_kb_document_gives_a_short_delta() -> None:
    old = document(35)
    new = document(35, change=True)
    delta = create(old, new)
    assert len(old) > 2000
    assert len(delta) < 80
    assert delta_worth_it(delta, new)
    assert apply(old, delta) == new


# ---------------------------------------------------------------------------
# Round trips


def test_non_ascii_content_round_trips_byte_exact() -> None:
    source = json.dumps({"text": "Привет, мир 👋🏽 — ещё раз", "n": 1}, ensure_ascii=False).encode()
    target = json.dumps(
        {"text": "Привет, мир 🚀👋🏽 — ещё два раза", "n": 2}, ensure_ascii=False
    ).encode()
    assert apply(source, create(source, target)) == target


def test_random_edits_of_binary_data_round_trip() -> None:
    rng = random.Random(17)
    for _ in range(150):
        source = rng.randbytes(rng.choice([0, 10, 16, 17, 100, 700, 2000]))
        target = mutate(rng, source, rng.randrange(6), lambda: rng.randbytes(rng.randrange(1, 40)))
        assert apply(source, create(source, target)) == target


def test_random_edits_of_utf8_text_round_trip_with_and_without_utf8_safe() -> None:
    rng = random.Random(18)
    for _ in range(150):
        source = text(rng, rng.choice([5, 50, 400, 2000]))
        target = mutate(rng, source, rng.randrange(6), lambda: text(rng, rng.randrange(1, 40)))
        assert apply(source, create(source, target)) == target
        assert apply(source, create(source, target, utf8_safe=True)) == target


# ---------------------------------------------------------------------------
# utf8_safe: deltas that can travel as JSON strings


def test_a_copy_may_end_inside_a_character_so_a_plain_delta_need_not_be_utf8() -> None:
    delta = REFERENCE_VECTORS["cyrillic"][2]
    with pytest.raises(UnicodeDecodeError):
        delta.decode()


def test_a_utf8_safe_delta_moves_the_split_character_into_the_insert() -> None:
    delta = create(CYRILLIC, CYRILLIC_EDITED, utf8_safe=True)
    assert delta == "2x\n13@0,5:не 1p@13,WXp96;".encode()
    assert apply(CYRILLIC, delta) == CYRILLIC_EDITED


def test_a_utf8_safe_delta_of_utf8_text_is_utf8() -> None:
    rng = random.Random(19)
    for _ in range(200):
        source = text(rng, rng.choice([50, 400, 2000]))
        target = mutate(rng, source, rng.randrange(1, 6), lambda: text(rng, rng.randrange(1, 40)))
        create(source, target, utf8_safe=True).decode()  # raises if not UTF-8


def test_a_utf8_safe_delta_is_the_plain_one_when_no_copy_splits_a_character() -> None:
    for source, target, delta in REFERENCE_VECTORS.values():
        if source is not CYRILLIC:
            assert create(source, target, utf8_safe=True) == delta


# ---------------------------------------------------------------------------
# apply refuses


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        (b"", "number expected"),
        (b"7", "ends before"),
        (b"7;", "not followed by a newline"),
        (b'7\n7:{"a":1}', "ends before"),
        (b'7\n7:{"a":1}2qKytZ;', "checksum mismatch"),
        (b'7\n7:{"a":1}2qKytY;x', "1 bytes after the checksum"),
        (b'7\n7!{"a":1}2qKytY;', "unknown operator '!'"),
        (b'7\n9:{"a":1}', "past the end of the delta"),
        (b'7\n8:{"a":1}xx2qKytY;', "past the target length"),
        (b'8\n7:{"a":1}2qKytY;', "makes 7 bytes, its header says 8"),
        (b'7\n:{"a":1}2qKytY;', "number expected"),
        (b"\xc0\n0;", "number expected"),
        (b'7\n7:{"a":1}4zzzzz;', "does not fit in 32 bits"),
        (b"1W\n1W@0;yGvvP;", "not ended by ','"),
        (b"1W\n1W@1,yGvvP;", "past the end of the source"),
        (b"1\n1W@0,yGvvP;", "past the target length"),
    ],
)
def test_apply_refuses_a_malformed_delta(delta: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply(DOC, delta)


def test_apply_refuses_a_delta_made_from_another_source() -> None:
    delta = create(DOC, DOC.replace(b"41", b"42"))
    with pytest.raises(ValueError, match="checksum mismatch"):
        apply(DOC.replace(b"alice", b"alina"), delta)


# ---------------------------------------------------------------------------
# delta_worth_it


def test_a_delta_is_worth_sending_only_when_shorter_than_the_target() -> None:
    assert delta_worth_it(b"x" * 9, b"y" * 10)
    assert not delta_worth_it(b"x" * 10, b"y" * 10)
    _, target, delta = REFERENCE_VECTORS["different"]
    assert not delta_worth_it(delta, target)


# ---------------------------------------------------------------------------
# helpers

WORDS = ["привет", "мир", "😀", "🚀", "ключ", "é", "中文", "abc", " ", '"', ":", "{", "}", "1"]


def document(items: int, change: bool = False) -> bytes:
    """A JSON document of `items` records (about 58 bytes each); `change` edits
    three values, about 1% of it."""
    rng = random.Random(3)
    doc = {
        "items": [
            {
                "id": i,
                "name": f"item-{i}",
                "price": round(rng.random() * 100, 2),
                "tags": ["a", "b"],
            }
            for i in range(items)
        ],
        "ts": 1700000000,
    }
    if change:
        doc["items"][5]["price"] = 12.34  # type: ignore[index]
        doc["items"][17]["name"] = "changed"  # type: ignore[index]
        doc["ts"] = 1700000001
    return json.dumps(doc, separators=(",", ":")).encode()


def text(rng: random.Random, size: int) -> bytes:
    """About `size` bytes of UTF-8 text: Cyrillic, emoji, CJK and ASCII words."""
    out = ""
    while len(out.encode()) < size:
        out += rng.choice(WORDS)
    return out.encode()


def mutate(rng: random.Random, data: bytes, edits: int, piece: Callable[[], bytes]) -> bytes:
    """`data` with `edits` insertions, deletions or replacements of whole
    pieces (`piece()` makes one; a deletion removes whole characters of text)."""
    chars = data.decode("utf-8", "surrogateescape")
    for _ in range(edits):
        at = rng.randrange(len(chars) + 1)
        new = piece().decode("utf-8", "surrogateescape")
        cut = rng.randrange(0, 12)
        chars = chars[:at] + (new if rng.random() < 0.7 else "") + chars[at + cut :]
    return chars.encode("utf-8", "surrogateescape")
