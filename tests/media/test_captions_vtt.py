"""The WebVTT reader/writer (app/media/webvtt.py): hostile and broken files, and what survives."""

from __future__ import annotations

import time

import pytest

from app.media import webvtt
from app.media.webvtt import InvalidCaptions, canonical_language, parse, sanitise_text, serialise


def vtt(*cues: str, header: str = "WEBVTT") -> bytes:
    return ("\n\n".join([header, *cues]) + "\n").encode()


def cue(start: str = "00:00.500", end: str = "00:01.500", text: str = "Hello", settings: str = "") -> str:
    return f"{start} --> {end}{' ' + settings if settings else ''}\n{text}"


def only_text(data: bytes, duration: int | None = 10) -> str:
    captions = parse(data, duration_seconds=duration)
    assert len(captions.cues) == 1
    return captions.cues[0].text


# ---- what is kept ---------------------------------------------------------------------------------


def test_a_plain_file_round_trips_to_a_canonical_one() -> None:
    data = b"\xef\xbb\xbfWEBVTT - made by hand\r\nKind: captions\r\n\r\n1\r\n00:00.500 --> 00:01.500\r\nHi\r\nthere\r\n"
    data += b"\r\nintro\r\n00:00:02.000 --> 00:00:03.250 align:start\r\n<b>Bold</b> &amp; <i>it</i>\r\n"
    captions = parse(data, duration_seconds=4)
    assert [(c.start_ms, c.end_ms, c.settings, c.text) for c in captions.cues] == [
        (500, 1500, "", "Hi\nthere"),
        (2000, 3250, "align:start", "<b>Bold</b> &amp; <i>it</i>"),
    ]
    out = serialise(captions, mpegts=126000).decode()
    assert out == (
        "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n"
        "00:00:00.500 --> 00:00:01.500\nHi\nthere\n\n"
        "00:00:02.000 --> 00:00:03.250 align:start\n<b>Bold</b> &amp; <i>it</i>\n"
    )
    # The output is itself acceptable input and reads back to the same cues.
    assert parse(out.encode(), duration_seconds=4) == captions


def test_allowed_tags_are_kept_with_classes_and_annotations() -> None:
    text = only_text(vtt(cue(text="<c.yellow.big>y</c> <v.loud Bob>Hi</v> <lang pt-br>oi</lang> <u>u</u>")))
    assert text == "<c.yellow.big>y</c> <v.loud Bob>Hi</v> <lang pt-BR>oi</lang> <u>u</u>"
    assert only_text(vtt(cue(text="<ruby>漢<rt>kan</rt></ruby>"))) == "<ruby>漢<rt>kan</rt></ruby>"


def test_unclosed_tags_are_closed_and_stray_end_tags_dropped() -> None:
    assert (
        only_text(vtt(cue(text="<b>bold <i>both\nstill</b> plain</i></u>"))) == "<b>bold <i>both\nstill</i></b> plain"
    )


def test_valid_settings_are_kept_and_invalid_ones_dropped() -> None:
    settings = "region:r1 line:bogus position:10%,line-left size:150% align:middle vertical:rl line:-2,end size:50%"
    captions = parse(vtt(cue(settings=settings)), duration_seconds=10)
    assert captions.cues[0].settings == "vertical:rl line:-2,end position:10%,line-left size:50%"


def test_note_style_and_region_blocks_and_identifiers_are_dropped() -> None:
    data = vtt(
        "STYLE\n::cue { background: url(javascript:alert(1)) }",
        "REGION\nid:r1 width:40%",
        "NOTE this is a comment\nwith <script>",
        "cue-<script>1\n" + cue(text="kept"),
        "NOTE trailing",
    )
    out = serialise(parse(data, duration_seconds=10)).decode()
    assert out == "WEBVTT\n\n00:00:00.500 --> 00:00:01.500\nkept\n"


# ---- hostile markup is escaped --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
        ('<b onclick="x()">hi</b>', '&lt;b onclick="x()"&gt;hi'),
        ("<B>upper</B>", "&lt;B&gt;upper&lt;/B&gt;"),  # WebVTT tag names are case-sensitive
        ("<c.a;b>x</c>", "&lt;c.a;b&gt;x"),
        ("<lang javascript:1>x</lang>", "&lt;lang javascript:1&gt;x"),
        ("<00:00:01.000>karaoke", "&lt;00:00:01.000&gt;karaoke"),
        ("<rt>outside ruby</rt>", "&lt;rt&gt;outside ruby"),
        ("<v Mallory<i>>x</v>", "<v Mallory&lt;i>&gt;x</v>"),
        ("&lt;script&gt; &#x3C;b&#x3E; &nbsp;&amp;", "&lt;script&gt; &lt;b&gt; \xa0&amp;"),
        ("unterminated <b class", "unterminated &lt;b class"),
        ("a > b & c", "a &gt; b &amp; c"),
    ],
)
def test_markup_outside_the_whitelist_is_escaped(raw: str, clean: str) -> None:
    assert sanitise_text(raw) == clean
    # and the cue as stored reads back to the same text
    assert only_text(vtt(cue(text=raw))) == clean


# ---- refused files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfeW\x00E\x00B\x00V\x00T\x00T\x00", "not UTF-8"),  # UTF-16
        ("WEBVTT\n\n00:00.500 --> 00:01.500\ncaf\xe9\n".encode("latin-1"), "not UTF-8"),
        (b"WEBVTT\n\n00:00.500 --> 00:01.500\nnul\x00byte\n", "control characters"),
        (b"00:00.500 --> 00:01.500\nno header\n", "WEBVTT header"),
        (b"WEBVTTX\n\n00:00.500 --> 00:01.500\nx\n", "WEBVTT header"),
        (b"1\n00:00:00,500 --> 00:00:01,500\nan SRT file\n", "WEBVTT header"),
        (b"WEBVTT\n", "no cue"),
        (b"WEBVTT\n\nNOTE only a note\n", "no cue"),
        (vtt(cue(text="<b></b>")), "no cue"),
        (vtt(cue(start="00:00,500")), "malformed cue timing"),
        (vtt(cue(start="00:61.000", end="01:02.000")), "malformed cue timing"),
        (vtt(cue(start="0:00.500")), "malformed cue timing"),
        (vtt(cue(end="00:01.5")), "malformed cue timing"),
        (vtt(cue(start="00:02.000", end="00:01.000")), "ends before it starts"),
        (vtt(cue(start="00:01.000", end="00:01.000")), "ends before it starts"),
        (vtt(cue("00:03.000", "00:04.000"), cue("00:02.000", "00:05.000")), "not increasing"),
        (vtt(cue(end="00:11.001")), "after the end of the media"),
        (vtt(cue(start="99999:00:00.000", end="99999:00:01.000")), "after the end of the media"),
        (vtt("just some text\nwithout timings"), "expected a cue"),
        (vtt(cue(text="one\n00:02.000 --> 00:03.000\ntwo")), "timing line"),
        (vtt(cue(text="x" * (webvtt.MAX_CUE_TEXT + 1))), "longer than"),
    ],
)
def test_broken_files_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(InvalidCaptions, match=message):
        parse(data, duration_seconds=10)


def test_overlapping_cues_and_equal_starts_are_allowed() -> None:
    data = vtt(
        cue("00:01.000", "00:05.000", "Alice"), cue("00:01.000", "00:02.000", "Bob"), cue("00:03.000", "00:04.000")
    )
    assert len(parse(data, duration_seconds=10).cues) == 3


def test_a_cue_may_end_up_to_one_second_after_the_media() -> None:
    assert parse(vtt(cue(end="00:11.000")), duration_seconds=10).cues[0].end_ms == 11_000


def test_huge_cue_counts_are_refused_quickly() -> None:
    many = "".join(
        f"\n{webvtt.format_timestamp(i)} --> {webvtt.format_timestamp(i + 1)}\nx\n" for i in range(webvtt.MAX_CUES + 1)
    )
    data = ("WEBVTT\n" + many).encode()
    assert len(data) < webvtt.MAX_BYTES
    started = time.perf_counter()
    with pytest.raises(InvalidCaptions, match="more than"):
        parse(data, duration_seconds=3600)
    assert time.perf_counter() - started < 5  # linear work, no pathological backtracking


def test_the_size_limit_holds_before_and_after_escaping() -> None:
    with pytest.raises(InvalidCaptions, match="larger than 2 MiB"):
        parse(b"WEBVTT\n\n" + b"x" * webvtt.MAX_BYTES, duration_seconds=10)
    # Escaping grows "<" to "&lt;": a file under the limit can exceed it once re-written.
    text = "<" * 1500
    body = "".join(
        f"\n{webvtt.format_timestamp(i * 10)} --> {webvtt.format_timestamp(i * 10 + 5)}\n{text}\n" for i in range(1300)
    )
    data = ("WEBVTT\n" + body).encode()
    assert len(data) < webvtt.MAX_BYTES
    with pytest.raises(InvalidCaptions, match="once re-written"):
        serialise(parse(data, duration_seconds=3600))


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("pt-br", "pt-BR"),
        ("zh-hant", "zh-Hant"),
        ("sr-Latn-RS", "sr-Latn-RS"),
        ("es-419", "es-419"),
        ("de-CH-1996", "de-CH-1996"),
        ("en-US-x-twain", "en-US-x-twain"),
        ("yue", "yue"),
        ("english", None),
        ("e", None),
        ("en_US", None),
        ("en-", None),
        ("../../etc", None),
        ("en US", None),
        ("x-private", None),
        ("a" * 36, None),
    ],
)
def test_language_tags(tag: str, canonical: str | None) -> None:
    assert canonical_language(tag) == canonical
