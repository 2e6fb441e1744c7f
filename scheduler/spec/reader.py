"""Spec text -> plain data (dicts, lists, str, int, float, bool, None), bounded, errors located.

The file is read up to MAX_SPEC_BYTES (at most that plus one byte is ever read, so `/dev/zero`
costs nothing). The YAML is parsed into events by libyaml (`yaml.CSafeLoader`) where PyYAML has
it, else by PyYAML's pure-Python parser (`yaml.SafeLoader`); values are built from the events
here, without recursion and without PyYAML's node graph, so the cost is one pass over the text:

- plain scalars follow the YAML 1.2 core schema: null (`~`, `null`, empty), booleans
  (`true`/`false` in three capitalisations), integers (`12`, `0o14`, `0x1F`), floats (`1.5`,
  `1e-3`, `.inf`, `.nan`); everything else is text (`yes`, `on`, `2024-01-01` included);
- a plain scalar that YAML 1.1 reads as another number than YAML 1.2 does, or as a number where
  YAML 1.2 reads text, is refused rather than guessed: base 60 (`1:30`, 90 in YAML 1.1),
  leading zeros (`012`, octal 10 in YAML 1.1, decimal 12 in YAML 1.2), binary (`0b101`) and digit
  separators (`1_000`); quoting makes any of them text;
- anchors and aliases are refused (a 521-byte alias bomb expands to billions of values);
- lists and mappings nest at most MAX_NESTING deep (the top-level mapping is one) and hold at most MAX_ITEMS entries (a sweep
  has at most `MAX_CONFIGS` configurations); integers have at most MAX_INT_DIGITS digits;
- duplicate keys are refused; one document only.

Every error is one `SpecError` line: `S.yaml:LINE:COL: invalid YAML: ...` for the syntax (worded
as PyYAML's pure-Python parser words it, whichever parser found it, for errors in the first
PYTHON_WORDING_BYTES of a file) and `S.yaml:LINE:COL: where: expected ... Received: ...` for the
bounds above.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scheduler.errors import SpecError
from scheduler.spec.model import MAX_CONFIGS
from scheduler.spec.values import key_text, one_line, render

MAX_SPEC_BYTES = 10 << 20  # a spec of MAX_CONFIGS explicit configurations is about 6 MiB
MAX_NESTING = 32  # a spec needs 6 levels: configs, [i], init, {name, params}
MAX_ITEMS = MAX_CONFIGS
MAX_INT_DIGITS = 100
PYTHON_WORDING_BYTES = 16 << 10  # the pure-Python parser reads 20-80 KB/s

_Parser: type[Any] = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)")
_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
# YAML 1.1 numbers that YAML 1.2 reads differently (or as text)
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")
_BINARY = re.compile(r"[-+]?0b[01_]+")
_SEPARATED = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|0x[0-9a-fA-F_]+)")
_TAG = "tag:yaml.org,2002:"


def read_spec_text(path: str | Path) -> str:
    """The text of the spec file at `path`, at most MAX_SPEC_BYTES of UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, expected a YAML file") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{path}: expected a spec file of at most {MAX_SPEC_BYTES:,} bytes (10 MiB). "
            f"Received: a larger file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_yaml(text: str, source: str = "<spec>") -> Any:
    """The one YAML document of `text` as plain data (None when empty); SpecError, located, for
    invalid or unbounded YAML (module docstring)."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{source}: expected a spec of at most {MAX_SPEC_BYTES:,} characters. "
            f"Received: {len(text):,}"
        )
    parser: Any = None
    try:
        parser = _Parser(text)  # the pure-Python reader checks every character here
        return _Builder(source).build(parser)
    except yaml.YAMLError as e:
        raise SpecError(_syntax_message(text, e, source)) from None
    finally:
        if parser is not None:
            parser.dispose()


# --- building --------------------------------------------------------------------------------

_NO_KEY = object()
_NUMBER_START = frozenset("0123456789+-.")


@dataclass
class _Frame:
    """A list or mapping being built. `key` is a mapping's pending key (_NO_KEY: none);
    `where` is this container's place in its parent (a key, or an index), for messages."""

    value: list[Any] | dict[Any, Any]
    where: tuple[bool, Any] | None = None  # (True, index) in a list, (False, key) in a mapping
    key: Any = _NO_KEY


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.stack: list[_Frame] = []

    def build(self, parser: Any) -> Any:
        """Values from `parser`'s events, one pass, no recursion (hot loop: kept flat)."""
        get_event = parser.get_event
        stack = self.stack
        top: _Frame | None = None
        result: Any = None
        documents = 0
        while True:
            event: Any = get_event()
            cls = type(event)
            if cls is yaml.ScalarEvent:
                if event.anchor is not None:
                    self._refuse_anchor(event, f"the anchor &{event.anchor}")
                if event.tag is None and event.implicit[0]:
                    text = event.value
                    if text[:1] in _NUMBER_START or text in _NULL or text in _BOOL:
                        value = self._plain(text, event.start_mark)
                    else:
                        value = text
                else:
                    value = self._scalar(event)
                if top is None:
                    result = value
                else:
                    self._add(top, value, event)
                continue
            if cls is yaml.MappingStartEvent or cls is yaml.SequenceStartEvent:
                if event.anchor is not None:
                    self._refuse_anchor(event, f"the anchor &{event.anchor}")
                sequence = cls is yaml.SequenceStartEvent
                self._check_tag(event, "seq" if sequence else "map")
                if len(stack) >= MAX_NESTING:
                    raise self._error(
                        event.start_mark,
                        f"expected lists and mappings nested at most {MAX_NESTING} deep. "
                        "Received: a value nested deeper",
                        where=_short(self._path(pending=True)),
                    )
                where: tuple[bool, Any] | None = None
                if top is not None:
                    if isinstance(top.value, list):
                        where = (True, len(top.value))
                    elif top.key is _NO_KEY:
                        key_mark: Any = event.start_mark
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", None, "found unhashable key", key_mark
                        )
                    else:
                        where = (False, top.key)
                top = _Frame([] if sequence else {}, where)
                stack.append(top)
                continue
            if cls is yaml.MappingEndEvent or cls is yaml.SequenceEndEvent:
                done = stack.pop()
                top = stack[-1] if stack else None
                if top is None:
                    result = done.value
                else:
                    self._add(top, done.value, event)
                continue
            if cls is yaml.AliasEvent:
                self._refuse_anchor(event, f"the alias *{event.anchor}")
            if cls is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    mark: Any = event.start_mark
                    raise yaml.composer.ComposerError(
                        "expected a single document in the stream",
                        None,
                        "but found another document",
                        mark,
                    )
                continue
            if cls is yaml.StreamEndEvent:
                return result
            # StreamStartEvent, DocumentEndEvent: nothing to build

    def _add(self, frame: _Frame, value: Any, event: Any) -> None:
        """Put a finished value into `frame`, the innermost open container."""
        container = frame.value
        if type(container) is list:
            if len(container) >= MAX_ITEMS:
                raise self._error(
                    event.start_mark,
                    f"expected a list of at most {MAX_ITEMS:,} items. Received: a longer list",
                    where=self._path(),
                )
            container.append(value)
            return
        assert isinstance(container, dict)
        if frame.key is not _NO_KEY:
            container[frame.key] = value
            frame.key = _NO_KEY
            return
        if value in container:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {render(value)}", event.start_mark
            )
        if len(container) >= MAX_ITEMS:
            raise self._error(
                event.start_mark,
                f"expected a mapping of at most {MAX_ITEMS:,} keys. Received: a larger one",
                where=self._path(),
            )
        container[value] = None  # holds the key's place (and its order) until its value comes
        frame.key = value

    def _path(self, *, pending: bool = False) -> str:
        """Where the innermost container sits (`grid.depth`); with `pending`, where its next
        value goes (`grid.depth[3]`)."""
        places = [f.where for f in self.stack[1:] if f.where is not None]
        if pending and self.stack:
            top = self.stack[-1]
            if isinstance(top.value, list):
                places.append((True, len(top.value)))
            elif top.key is not _NO_KEY:
                places.append((False, top.key))
        text = ""
        for is_index, place in places:
            if is_index:
                text += f"[{place}]"
            else:
                segment = key_text(place)
                text += f".{segment}" if text else segment
        return text

    def _scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag == "!":
            return event.value
        if tag is None:
            if not event.implicit[0]:  # quoted or block scalar: text
                return event.value
            return self._plain(event.value, event.start_mark)
        if tag == _TAG + "str":
            return event.value
        if tag in (_TAG + "int", _TAG + "float", _TAG + "bool", _TAG + "null"):
            value = self._plain(event.value, event.start_mark)
            kind = {"int": int, "float": float, "bool": bool, "null": type(None)}[
                tag.removeprefix(_TAG)
            ]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            if type(value) is kind:
                return value
            raise self._error(
                event.start_mark,
                f"expected a value of the tag {tag.removeprefix(_TAG)!r}. "
                f"Received: {render(event.value)}",
                where=self._path(pending=True),
            )
        raise yaml.constructor.ConstructorError(
            None, None, f"could not determine a constructor for the tag {render(tag)}",
            event.start_mark,
        )  # fmt: skip

    def _plain(self, text: str, mark: Any) -> Any:
        """A plain scalar under the YAML 1.2 core schema (module docstring)."""
        if text in _NULL:
            return None
        if text in _BOOL:
            return _BOOL[text]
        if text[:1] not in "0123456789+-.":
            return text
        if _INT.fullmatch(text) and len(text.lstrip("+-")) > MAX_INT_DIGITS:
            raise self._error(
                mark,
                f"expected a number of at most {MAX_INT_DIGITS} digits. Received: "
                f"{len(text.lstrip('+-')):,} digits",
                where=self._path(pending=True),
            )
        if _LEADING_ZERO.fullmatch(text):
            decimal = int(text)
            if set(text.lstrip("+-")) <= set("01234567"):
                what = f"octal in YAML 1.1 ({int(text, 8)}) but decimal in YAML 1.2 ({decimal})"
            else:
                what = "a number with leading zeros, text in YAML 1.1"
            return self._refuse_number(text, mark, what, str(decimal))
        for pattern, base in ((_INT, 10), (_OCT, 8), (_HEX, 16)):
            if pattern.fullmatch(text):
                digits = text if base == 10 else text[2:]
                if len(digits.lstrip("+-")) > MAX_INT_DIGITS:
                    raise self._error(
                        mark,
                        f"expected a number of at most {MAX_INT_DIGITS} digits. Received: "
                        f"{len(digits):,} digits",
                        where=self._path(pending=True),
                    )
                return int(digits, base)
        if _FLOAT.fullmatch(text):
            return float(text)
        if _INF.fullmatch(text):
            return -math.inf if text.startswith("-") else math.inf
        if _NAN.fullmatch(text):
            return math.nan
        if len(text) > MAX_INT_DIGITS:  # text, whatever YAML 1.1 made of it
            return text
        if _SEXAGESIMAL.fullmatch(text):
            number = _base60(text)
            what = f"a base-60 number in YAML 1.1 ({number}) but text in YAML 1.2"
            return self._refuse_number(text, mark, what, number)
        if _BINARY.fullmatch(text):
            number = str(int(text.replace("_", ""), 0))
            what = f"a binary number in YAML 1.1 ({number}) but text in YAML 1.2"
            return self._refuse_number(text, mark, what, number)
        if "_" in text and _SEPARATED.fullmatch(text):
            number = text.replace("_", "")
            what = "a number with digit separators in YAML 1.1 but text in YAML 1.2"
            return self._refuse_number(text, mark, what, number)
        return text

    def _refuse_number(self, text: str, mark: Any, what: str, number: str) -> Any:
        raise self._error(
            mark,
            f"expected a YAML 1.2 number, or quoted text. Received: {text}, {what}; write "
            f"{number} for the number, or '{text}' for text",
            where=self._path(pending=True),
        )

    def _check_tag(self, event: Any, kind: str) -> None:
        if event.tag not in (None, "!", _TAG + kind):
            raise yaml.constructor.ConstructorError(
                None, None, f"could not determine a constructor for the tag {render(event.tag)}",
                event.start_mark,
            )  # fmt: skip

    def _refuse_anchor(self, event: Any, what: str) -> None:
        raise self._error(
            event.start_mark,
            "expected values written out: YAML anchors and aliases are not supported in a spec "
            f"(a few bytes of them can expand to billions of values). Received: {what}",
            where=self._path(pending=True),
        )

    def _error(self, mark: Any, message: str, *, where: str = "") -> SpecError:
        at = f"{self.source}:{mark.line + 1}:{mark.column + 1}"
        return SpecError(f"{at}: {where}: {message}" if where else f"{at}: {message}")


def _short(path: str, limit: int = 60) -> str:
    return path if len(path) <= limit else path[: limit - 3] + "..."


def _base60(text: str) -> str:
    sign = -1 if text.startswith("-") else 1
    value: float = 0
    for part in text.lstrip("+-").replace("_", "").split(":"):
        value = value * 60 + (float(part) if "." in part else int(part))
    value *= sign
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- syntax errors ---------------------------------------------------------------------------


def _syntax_message(text: str, error: yaml.YAMLError, source: str) -> str:
    """`source:LINE:COL: invalid YAML: reason`, worded by the pure-Python parser when the error
    lies in the first PYTHON_WORDING_BYTES (libyaml words the same errors differently)."""
    parser_error = (yaml.scanner.ScannerError, yaml.parser.ParserError, yaml.reader.ReaderError)
    if _Parser is not yaml.SafeLoader and isinstance(error, parser_error):
        prefix = _prefix_through(text, error)
        if prefix is not None:
            worded = _python_error(prefix)
            if worded is not None and _position(worded, prefix) <= _position(error, text):
                error = worded
                text = prefix
    if isinstance(error, yaml.reader.ReaderError):
        line, column = _line_column(text, error.position)
        character = error.character
        code = f"#x{ord(character):04x}" if isinstance(character, str) else f"#x{character:04x}"
        return (
            f"{source}:{line}:{column}: invalid YAML: unacceptable character {code}: {error.reason}"
        )
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        reason = error.problem or "malformed"
        if "maximum nesting depth" in reason and mark is not None:  # libyaml's scanner, at 1000
            return (
                f"{source}:{mark.line + 1}:{mark.column + 1}: expected lists and mappings "
                f"nested at most {MAX_NESTING} deep. Received: a value nested deeper"
            )
        if error.context:
            reason = f"{reason} ({error.context})"
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        return f"{where}: invalid YAML: {one_line(reason)}"
    return f"{source}: invalid YAML: {one_line(str(error))[:200]}"


def _prefix_through(text: str, error: yaml.YAMLError) -> str | None:
    """The text through the line after the error's line, if short enough to re-parse."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        if mark is None:
            return None
        end = -1
        for _ in range(mark.line + 2):
            end = text.find("\n", end + 1, PYTHON_WORDING_BYTES + 1)
            if end < 0:
                break
        prefix = text if end < 0 and len(text) <= PYTHON_WORDING_BYTES else text[: end + 1]
        return prefix if 0 < len(prefix) <= PYTHON_WORDING_BYTES else None
    return text[:PYTHON_WORDING_BYTES]


def _python_error(text: str) -> yaml.YAMLError | None:
    """The pure-Python parser's error on `text`, if it finds one; None for text nested deeper
    than MAX_NESTING brackets (its flow scanner is quadratic in the nesting)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if deepest > MAX_NESTING:
        return None
    loader: Any = None
    try:
        loader = yaml.SafeLoader(text)
        while loader.check_event():
            loader.get_event()
    except yaml.YAMLError as e:
        return e
    except ValueError:  # yaml.reader raises it for text it cannot read at all
        return None
    finally:
        if loader is not None:
            loader.dispose()
    return None


def _position(error: yaml.YAMLError, text: str) -> tuple[int, int]:
    if isinstance(error, yaml.reader.ReaderError):
        return _line_column(text, error.position)
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        if mark is not None:
            return mark.line + 1, mark.column + 1
    return len(text) + 1, 0


def _line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of character `position`."""
    position = max(0, min(position, len(text)))
    line_start = text.rfind("\n", 0, position) + 1
    return text.count("\n", 0, position) + 1, position - line_start + 1
