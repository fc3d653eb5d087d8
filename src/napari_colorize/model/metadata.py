"""The schema of a model file's metadata, checked before anything is built from it.

A model file's metadata is JSON that anyone can edit.  Every field the package reads is
checked here against a small declarative table (type, bounds, allowed names from the
registries) so that an edited or damaged file gives one message naming the file, the
field and what to do -- never a ``KeyError`` from deep inside, and never a 64 GB
allocation for ``"hidden": 1000000000``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..decode import METHODS
from ..spaces import SPACES
from .backbones import BACKBONES, HIDDEN_RANGE

__all__ = ["FORMAT_VERSION", "METADATA_KEY", "ModelMetadataError", "Rule", "MODEL_FIELDS", "DECODING_FIELDS",
           "parse_metadata", "check_metadata"]

#: Version of the metadata layout written by this package.
FORMAT_VERSION = 1
#: Key of the metadata document in a model file's safetensors header.
METADATA_KEY = "napari_colorize"
#: The key of a training run's resumable state (``NAME.ckpt.safetensors``): not a model.
TRAINING_STATE_KEY = "napari_colorize_state"

_FIX = "use an unedited copy of the model file, or correct the field in its metadata"


class ModelMetadataError(ValueError):
    """A model file's metadata is missing, malformed or out of bounds."""


@dataclass(frozen=True)
class Rule:
    """What one metadata field may hold.

    Attributes
    ----------
    kind : {"int", "number", "str", "bool", "object", "interval"}
        JSON type; "int" is a whole number (not ``true``), "interval" a list
        ``[lo, hi]`` of two numbers with ``lo < hi``.
    required : bool
        The field must be present.
    nullable : bool
        ``null`` is allowed.
    lo, hi : float or None
        Inclusive bounds of a number (of both ends of an interval).
    hi_open, lo_open : bool
        Make the bound exclusive.
    choices : callable or None
        Returns the allowed strings (read when checking, so later registrations count).
    example : str
        A valid value, shown in the message.
    """

    kind: str
    required: bool = False
    nullable: bool = False
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: Callable[[], Iterable[str]] | None = None
    example: str = ""


MODEL_FIELDS: dict[str, Rule] = {
    "backbone": Rule("str", required=True, choices=lambda: BACKBONES, example='"compact"'),
    "space": Rule("str", required=True, choices=lambda: SPACES, example='"hue_chroma"'),
    "hidden": Rule("int", required=True, lo=HIDDEN_RANGE[0], hi=HIDDEN_RANGE[1], example="128"),
    "dropout": Rule("number", lo=0.0, hi=1.0, hi_open=True, example="0.0"),
    "context": Rule("int", lo=0, hi=1024, example="0"),
    "context_dropout": Rule("number", lo=0.0, hi=1.0, hi_open=True, example="0.0"),
    "input_convention": Rule("str"),
    "format_version": Rule("int", lo=0, example=str(FORMAT_VERSION)),
    "decoding": Rule("object", example="{}"),
    "training": Rule("object", example="{}"),
    "bins": Rule("object"),
}

#: Fields of ``decoding`` that :func:`napari_colorize.api.decode_options_for` applies.
DECODING_FIELDS: dict[str, Rule] = {
    "method": Rule("str", nullable=True, choices=lambda: METHODS, example='"expectation"'),
    "confidence_fading": Rule("interval", nullable=True, lo=0.0, hi=1.0, example="[0.0, 0.05]"),
    "saturation": Rule("number", lo=0.0, hi=100.0, example="1.0"),
    "chroma_gain": Rule("number", lo=0.0, hi=100.0, lo_open=True, example="1.0"),
    "fading": Rule("bool", example="true"),
    "eta": Rule("number", lo=0.0, hi=1.0, lo_open=True, example="0.03"),
    "seed": Rule("int", example="0"),
    "temperature": Rule("number", lo=0.0, lo_open=True, example="1.0"),
    "calibration": Rule("object", nullable=True, example="{}"),
}

_JSON_TYPE = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a whole number",
              float: "a number", type(None): "null"}


def parse_metadata(text: str, source: str) -> dict[str, Any]:
    """The metadata document of ``source``, parsed and checked.

    Raises
    ------
    ModelMetadataError
        For invalid JSON, a document that is not an object, a format version newer than
        this package reads, or any field outside :data:`MODEL_FIELDS` /
        :data:`DECODING_FIELDS`.
    """
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, TypeError) as err:
        raise ModelMetadataError(f"{source}: the model metadata is not valid JSON ({err}); use an unedited copy "
                                 "of the model file, or repair the JSON in its metadata") from None
    check_metadata(doc, source)
    return doc


def check_metadata(doc: Any, source: str) -> None:
    """Check a metadata document against the schema (see :func:`parse_metadata`)."""
    if not isinstance(doc, dict):
        raise ModelMetadataError(f"{source}: the model metadata is {_describe(doc)}, not a JSON object; {_FIX}")
    version = doc.get("format_version", 0)
    if _is_int(version) and version > FORMAT_VERSION:
        raise ModelMetadataError(f"{source}: this model has format version {version} (this napari-colorize reads "
                                 f"up to {FORMAT_VERSION}); upgrade napari-colorize to read it")
    _check_fields(doc, MODEL_FIELDS, "", source)
    decoding = doc.get("decoding")
    if isinstance(decoding, dict):
        _check_fields(decoding, DECODING_FIELDS, "decoding.", source)


def _check_fields(doc: dict[str, Any], rules: dict[str, Rule], prefix: str, source: str) -> None:
    # Unknown fields are kept and ignored: free-form notes, or fields of a later minor release.
    for name, rule in rules.items():
        if name not in doc:
            if rule.required:
                raise ModelMetadataError(f"{source}: the model metadata has no field {prefix + name!r} "
                                         f"(e.g. \"{name}\": {rule.example}); {_FIX}")
            continue
        problem = _problem(doc[name], rule)
        if problem:
            raise ModelMetadataError(f"{source}: model metadata field {prefix + name!r} is {_show(doc[name])}; "
                                     f"{problem}. {_FIX[0].upper() + _FIX[1:]}")


def _problem(value: Any, rule: Rule) -> str:
    """What is wrong with ``value`` under ``rule`` ("" if nothing)."""
    if value is None:
        return "" if rule.nullable else f"it must be {_expected(rule)}"
    checks = {"int": _is_int, "number": _is_number, "str": lambda v: isinstance(v, str),
              "bool": lambda v: isinstance(v, bool), "object": lambda v: isinstance(v, dict),
              "interval": _is_interval}
    if not checks[rule.kind](value):
        return f"it must be {_expected(rule)}"
    if rule.choices is not None and value not in tuple(rule.choices()):
        return f"choose one of {', '.join(rule.choices())}"
    ends = value if rule.kind == "interval" else [value] if rule.kind in ("int", "number") else []
    if not all(_in_bounds(v, rule) for v in ends):
        return f"it must be {_expected(rule)}"
    return ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    # JSON allows NaN and Infinity through Python's parser; neither is a usable setting.
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_interval(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_is_number, value)) and value[0] < value[1]


def _in_bounds(value: float, rule: Rule) -> bool:
    if rule.lo is not None and (value < rule.lo or (rule.lo_open and value == rule.lo)):
        return False
    return rule.hi is None or not (value > rule.hi or (rule.hi_open and value == rule.hi))


def _expected(rule: Rule) -> str:
    """``rule`` in words: "a whole number from 8 to 4096 (e.g. 128)"."""
    words = {"int": "a whole number", "number": "a number", "str": "a string", "bool": "true or false",
             "object": "a JSON object", "interval": "a list [lo, hi] of two numbers with lo < hi"}[rule.kind]
    if rule.lo is not None or rule.hi is not None:
        lo = "" if rule.lo is None else f"{'>' if rule.lo_open else '>='} {rule.lo:g}"
        hi = "" if rule.hi is None else f"{'<' if rule.hi_open else '<='} {rule.hi:g}"
        words += f" {lo}{' and ' if lo and hi else ''}{hi}"
    if rule.choices is not None:
        words += f" naming one of {', '.join(rule.choices())}"
    if rule.nullable:
        words += " or null"
    return words + (f" (e.g. {rule.example})" if rule.example else "")


def _describe(value: Any) -> str:
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A short rendering of a bad value and its JSON type."""
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({_describe(value)})"
