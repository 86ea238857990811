"""A strict WebVTT reader and writer for uploaded captions (api.md §6.2, security.md §6).

Captions are parsed, never passed through: ``parse`` turns the upload into cues, refusing what a
well-formed caption file never contains, and ``serialise`` writes a fresh file from those cues
alone. What reaches a player is therefore only: the ``WEBVTT`` line, an optional
``X-TIMESTAMP-MAP`` header the server writes itself, and for each cue its timings, its recognised
settings and its text, in which only ``<b> <i> <u> <c> <v> <lang> <ruby> <rt>`` survive as tags.

Decisions (the WebVTT spec leaves a parser free to ignore these; we choose to drop or refuse):

- Encoding: UTF-8 only (a UTF-8 BOM is skipped); anything else, or a NUL or other C0 control
  character except tab, is refused. CRLF and CR line ends become LF.
- Header: the first line is ``WEBVTT`` alone or followed by a space or tab and text; the text and
  any header lines under it are dropped.
- ``NOTE``, ``STYLE`` and ``REGION`` blocks are dropped (styles and regions are markup we do not
  vet; notes are comments). Any other block must be a cue: an optional identifier line (dropped:
  only styles refer to it), then ``start --> end`` and then the text. A block that is neither is
  refused: it is a broken file (an SRT with comma decimals, a cue without timings), not a comment.
- Timings: ``[hh:]mm:ss.ttt`` with minutes and seconds below 60; end after start; each cue starts
  no earlier than the one before (cues may overlap, as two speakers' lines do; starts may not go
  back in time); no cue ends after the media's duration + 1 s.
- Cue settings: the valid ones (``vertical``, ``line``, ``position``, ``size``, ``align``) are kept,
  re-spelled from their parsed values; invalid ones and ``region`` (regions are dropped) are dropped
  silently, as a WebVTT user agent would ignore them.
- Text: tags other than the eight above, timestamp tags, and tags in the wrong place (an ``<rt>``
  outside ``<ruby>``) are escaped and so show as literal text; an end tag that closes nothing is
  dropped; tags left open at the end of a cue are closed. Classes (``<c.yellow>``) are kept when
  they are plain names; the ``<v>`` annotation (the speaker) is escaped text; ``<lang>`` needs a
  BCP 47 tag. Character references are decoded and ``& < >`` escaped again. A line holding
  ``-->`` inside a cue's text is refused (it is a timing line that lost its blank line).
- Cues whose text is empty are dropped; a file with no cue left is refused.
- Limits: the body is at most 2 MiB (the route's 413), at most ``MAX_CUES`` cues, a cue's text at
  most ``MAX_CUE_TEXT`` characters, and the re-serialised file at most 2 MiB as well.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

MAX_BYTES = 2 * 1024 * 1024
MAX_CUES = 20_000
MAX_CUE_TEXT = 2_000
DURATION_SLACK_MS = 1_000
MAX_MEDIA_SECONDS = 86_400  # media_items.duration_seconds' bound: the limit when no duration is given

ALLOWED_TAGS = frozenset({"b", "i", "u", "c", "v", "lang", "ruby", "rt"})

# BCP 47 (RFC 5646) language tags as players meet them: a 2-3 letter language with up to three
# extlang subtags, then optional script, region, variants, extensions and a private-use part.
# The 4-8 letter language subtags (reserved/registered, none in use), private-use-only tags and
# the grandfathered irregular ones are left out.
BCP47 = re.compile(
    r"[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}"
    r"(?:-[A-Za-z]{4})?"
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
    r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?"
)
MAX_LANGUAGE_LENGTH = 35

_TIMESTAMP = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_TIMING = re.compile(rf"{_TIMESTAMP}[ \t]+-->[ \t]+{_TIMESTAMP}(?:[ \t]+(.*))?")
_TIMESTAMP_TAG = re.compile(_TIMESTAMP)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_HEADER = re.compile(r"WEBVTT(?:[ \t].*)?")
_CLASS = re.compile(r"[A-Za-z0-9_-]{1,32}")
_TAG_NAME = re.compile(r"[A-Za-z0-9]+")
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)%")
_LINE_NUMBER = re.compile(r"-?\d{1,4}")
_TAGS = re.compile(r"<[^>]*>")  # in sanitised text every "<" left starts one of our tags


class InvalidCaptions(ValueError):
    """The upload is not an acceptable WebVTT file; the message says why (shown to the caller)."""


@dataclass(frozen=True, slots=True)
class Cue:
    start_ms: int
    end_ms: int
    settings: str  # re-spelled valid settings, "" for none
    text: str  # sanitised cue text (may hold newlines)


@dataclass(frozen=True, slots=True)
class Captions:
    cues: tuple[Cue, ...]


def canonical_language(tag: str) -> str | None:
    """The tag in its usual case (``pt-BR``, ``zh-Hant``, ``sr-Latn-RS``), or None when it is not
    a BCP 47 tag we accept."""
    if not isinstance(tag, str) or len(tag) > MAX_LANGUAGE_LENGTH or not BCP47.fullmatch(tag):
        return None
    parts = tag.split("-")
    out = [parts[0].lower()]
    private = False
    for index, part in enumerate(parts[1:], start=1):
        previous = parts[index - 1]
        if private or len(previous) == 1:  # inside an extension or private-use sequence
            private = private or previous.lower() == "x"
            out.append(part.lower())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        elif len(part) == 2 and part.isalpha():
            out.append(part.upper())
        else:
            out.append(part.lower())
    return "-".join(out)


def _ms(hours: str | None, minutes: str, seconds: str, millis: str) -> int:
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)


def format_timestamp(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


# ---- cue settings ---------------------------------------------------------------------------


def _percent(value: str) -> str | None:
    match = _PERCENT.fullmatch(value)
    if match is None or float(match.group(1)) > 100:
        return None
    return value


def _setting(name: str, value: str) -> str | None:
    """The setting's value re-spelled when valid for its name, else None (dropped)."""
    if name == "vertical":
        return value if value in ("rl", "lr") else None
    if name == "align":
        return value if value in ("start", "center", "end", "left", "right") else None
    if name == "size":
        return _percent(value)
    if name == "position":
        where, _, anchor = value.partition(",")
        if _percent(where) is None or (anchor and anchor not in ("line-left", "center", "line-right")):
            return None
        return value
    if name == "line":
        where, _, anchor = value.partition(",")
        if _percent(where) is None and not _LINE_NUMBER.fullmatch(where):
            return None
        if anchor and anchor not in ("start", "center", "end"):
            return None
        return value
    return None  # region (regions are dropped) and anything unknown


def parse_settings(raw: str) -> str:
    """Valid settings in a fixed order; the last of a repeated setting wins (as in WebVTT)."""
    kept: dict[str, str] = {}
    for item in raw.split():
        name, sep, value = item.partition(":")
        if not sep or not value:
            continue
        valid = _setting(name, value)
        if valid is not None:
            kept[name] = valid
    order = ("vertical", "line", "position", "size", "align")
    return " ".join(f"{name}:{kept[name]}" for name in order if name in kept)


# ---- cue text -------------------------------------------------------------------------------


def _escape(text: str) -> str:
    if "&" not in text and "<" not in text and ">" not in text:
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _text(raw: str) -> str:
    # Character references decoded (``&amp;``, ``&#x3C;``, ``&nbsp;``...), then the three that matter escaped.
    return _escape(html.unescape(raw) if "&" in raw else raw)


def sanitise_text(raw: str) -> str:
    """Cue text with only the allowed tags kept (re-spelled), everything else escaped."""
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    length = len(raw)
    while pos < length:
        lt = raw.find("<", pos)
        if lt < 0:
            out.append(_text(raw[pos:]))
            break
        out.append(_text(raw[pos:lt]))
        gt = raw.find(">", lt + 1)
        if gt < 0 or "\n" in raw[lt:gt]:
            # An unterminated tag (or one running across lines) is text.
            newline = raw.find("\n", lt)
            end = length if newline < 0 or gt < 0 else newline
            out.append(_escape(raw[lt:end]))
            pos = end
            continue
        tag = raw[lt + 1 : gt]
        rendered = _tag(tag, stack)
        out.append(_escape(raw[lt : gt + 1]) if rendered is None else rendered)
        pos = gt + 1
    out.extend(f"</{name}>" for name in reversed(stack))
    return "".join(out)


def _tag(tag: str, stack: list[str]) -> str | None:
    """The tag as we write it (updating the open-element stack), "" to drop it, None to escape it."""
    if tag.startswith("/"):
        name = tag[1:]
        if name not in ALLOWED_TAGS:
            return None
        if name not in stack:
            return ""  # closes nothing: dropped
        closing: list[str] = []
        while stack:
            top = stack.pop()
            closing.append(f"</{top}>")
            if top == name:
                break
        return "".join(closing)
    head, _, annotation = tag.replace("\t", " ").partition(" ")
    name, *classes = head.split(".")
    if not _TAG_NAME.fullmatch(name) or name not in ALLOWED_TAGS:
        return None  # unknown tags and timestamp tags (<00:00:01.000>) are text
    if any(not _CLASS.fullmatch(cls) for cls in classes):
        return None
    if name == "rt" and "ruby" not in stack:
        return None
    annotation = annotation.strip()
    suffix = ""
    if name == "v":
        suffix = f" {_text(annotation)}" if annotation else ""
    elif name == "lang":
        language = canonical_language(annotation)
        if language is None:
            return None
        suffix = f" {language}"
    elif annotation:
        return None  # only <v> and <lang> take an annotation
    stack.append(name)
    class_part = "".join(f".{cls}" for cls in classes)
    return f"<{name}{class_part}{suffix}>"


# ---- the file -------------------------------------------------------------------------------


def decode(data: bytes) -> str:
    if not data:
        raise InvalidCaptions("The captions file is empty.")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCaptions("The captions file is not UTF-8 text.") from None
    if _CONTROL.search(text):
        raise InvalidCaptions("The captions file contains control characters.")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _blocks(lines: list[str]) -> list[tuple[int, list[str]]]:
    """Blank-line separated blocks with the (1-based) number of their first line."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(lines, start=1):
        if line.strip() == "":
            if current:
                blocks.append((start, current))
                current = []
            continue
        if not current:
            start = number
        current.append(line)
    if current:
        blocks.append((start, current))
    return blocks


def _is_dropped_block(first: str) -> bool:
    word = first.split(None, 1)[0] if first.split() else ""
    return word in ("NOTE", "STYLE", "REGION") and "-->" not in first


def parse(data: bytes, *, duration_seconds: int | None = None) -> Captions:
    """The cues of an uploaded WebVTT file, or ``InvalidCaptions`` (see the module's rules)."""
    if len(data) > MAX_BYTES:
        raise InvalidCaptions("The captions file is larger than 2 MiB.")
    lines = decode(data).split("\n")
    if not _HEADER.fullmatch(lines[0]):
        raise InvalidCaptions("The file does not start with the WEBVTT header.")
    # The header block (the WEBVTT line and any metadata lines under it) ends at the first blank line.
    body_start = next((i for i, line in enumerate(lines) if line.strip() == ""), len(lines))
    limit_ms = (duration_seconds or MAX_MEDIA_SECONDS) * 1000 + DURATION_SLACK_MS
    cues: list[Cue] = []
    previous_start = -1
    for line_number, block in _blocks(lines[body_start:]):
        line_number += body_start
        if _is_dropped_block(block[0]):
            continue
        timing_index = 0 if "-->" in block[0] else 1
        if timing_index >= len(block) or "-->" not in block[timing_index]:
            raise InvalidCaptions(f"Line {line_number}: expected a cue (start --> end), found something else.")
        match = _TIMING.fullmatch(block[timing_index].strip())
        if match is None:
            raise InvalidCaptions(f"Line {line_number + timing_index}: malformed cue timing.")
        start = _ms(*match.group(1, 2, 3, 4))
        end = _ms(*match.group(5, 6, 7, 8))
        where = f"Line {line_number + timing_index}"
        if end <= start:
            raise InvalidCaptions(f"{where}: the cue ends before it starts.")
        if start < previous_start:
            raise InvalidCaptions(f"{where}: cue times are not increasing.")
        if end > limit_ms:
            raise InvalidCaptions(f"{where}: the cue ends after the end of the media.")
        previous_start = start
        payload = block[timing_index + 1 :]
        if any("-->" in line for line in payload):
            raise InvalidCaptions(f"{where}: a cue's text holds a timing line (missing blank line).")
        raw_text = "\n".join(line.strip() for line in payload)
        if len(raw_text) > MAX_CUE_TEXT:
            raise InvalidCaptions(f"{where}: the cue's text is longer than {MAX_CUE_TEXT} characters.")
        text = sanitise_text(raw_text)
        if not _TAGS.sub("", text).strip():
            continue  # nothing to show (only tags, or only whitespace)
        if len(cues) >= MAX_CUES:
            raise InvalidCaptions(f"The file has more than {MAX_CUES} cues.")
        cues.append(Cue(start, end, parse_settings(match.group(9) or ""), text))
    if not cues:
        raise InvalidCaptions("The file has no cue.")
    return Captions(tuple(cues))


def serialise(captions: Captions, *, mpegts: int | None = None) -> bytes:
    """A fresh WebVTT file of the cues; with ``mpegts``, the HLS ``X-TIMESTAMP-MAP`` header that
    puts the cues' zero at that 90 kHz timestamp (the video segments' first one)."""
    parts = ["WEBVTT\n"]
    if mpegts is not None:
        parts.append(f"X-TIMESTAMP-MAP=MPEGTS:{int(mpegts)},LOCAL:00:00:00.000\n")
    for cue in captions.cues:
        settings = f" {cue.settings}" if cue.settings else ""
        parts.append(f"\n{format_timestamp(cue.start_ms)} --> {format_timestamp(cue.end_ms)}{settings}\n{cue.text}\n")
    data = "".join(parts).encode("utf-8")
    if len(data) > MAX_BYTES:
        raise InvalidCaptions("The captions file is larger than 2 MiB once re-written.")
    return data
