"""Shared field behaviour: ``Str`` normalisation and its blank-as-None rule."""

from __future__ import annotations

import marshmallow as ma
import pytest

from app.schemas import Str


class NoteSchema(ma.Schema):
    note = Str(allow_none=True, blank_as_none=True, load_default=None, validate=ma.validate.Length(min=2, max=4))
    name = Str(validate=ma.validate.Length(min=1))


@pytest.mark.parametrize("blank", ["", "   ", "\u00a0"])
def test_blank_becomes_none_without_running_validators(blank: str) -> None:
    assert NoteSchema().load({"note": blank}) == {"note": None}


def test_text_still_validated_when_blank_as_none() -> None:
    assert NoteSchema().load({"note": " ab "}) == {"note": "ab"}
    with pytest.raises(ma.ValidationError) as exc:
        NoteSchema().load({"note": "abcde"})
    assert exc.value.messages == {"note": ["Length must be between 2 and 4."]}


def test_plain_str_blank_is_kept_and_validated() -> None:
    with pytest.raises(ma.ValidationError) as exc:
        NoteSchema().load({"name": "  "})
    assert "name" in exc.value.messages


def test_nfc_and_control_characters() -> None:
    assert NoteSchema().load({"name": "Cafe\u0301"})["name"] == "Caf\u00e9"
    with pytest.raises(ma.ValidationError):
        NoteSchema().load({"name": "a\x00b"})
