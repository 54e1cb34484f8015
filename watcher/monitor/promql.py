"""PromQL query templates: ``{model}``, ``{version}``, ``{metric}`` filled in safely. Pure.

A placeholder may only stand inside a double-quoted string (a label value:
``model_accuracy{model="{model}"}``); the value put there is escaped for that string,
and first for RE2 when the string is a regex matcher (``=~`` / ``!~``), so a model
named ``a"}or vector(1)#`` or ``fraud.v2`` selects exactly that model and nothing else.
Anything else (an unknown placeholder, one outside a string, an unterminated string,
unbalanced brackets) is refused when the config is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PLACEHOLDERS = ("model", "version", "metric")
MAX_TEMPLATE = 4096  # characters: a query travels in a GET URL
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CLOSE = {")": "(", "]": "[", "}": "{"}
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


class TemplateError(ValueError):
    """Why a template is refused (the caller names the key)."""


@dataclass(frozen=True, slots=True)
class _Slot:
    name: str
    start: int
    end: int
    regex: bool  # inside a =~ / !~ matcher's string


@dataclass(frozen=True, slots=True)
class Template:
    """A checked template; :meth:`render` fills it."""

    text: str
    slots: tuple[_Slot, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.slots)

    def render(self, **values: str) -> str:
        out: list[str] = []
        pos = 0
        for slot in self.slots:
            value = values[slot.name]
            out.append(self.text[pos : slot.start])
            out.append(escape(regex_escape(value) if slot.regex else value))
            pos = slot.end
        out.append(self.text[pos:])
        return "".join(out)


def escape(value: str) -> str:
    """``value`` as the inside of a PromQL double-quoted string (Go escapes)."""
    out: list[str] = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def regex_escape(value: str) -> str:
    """``value`` matched literally by an RE2 regex (Prometheus anchors it whole)."""
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in value)


def parse_template(text: str) -> Template:
    """Check ``text`` and find its placeholders; TemplateError says what is wrong."""
    if not text.strip():
        raise TemplateError("must not be empty")
    if len(text) > MAX_TEMPLATE:
        raise TemplateError(f"longer than {MAX_TEMPLATE} characters")
    slots: list[_Slot] = []
    brackets: list[tuple[str, int]] = []
    quote: str | None = None  # the quote of the string we are in
    regex = False
    i = 0
    while i < len(text):
        found = _PLACEHOLDER.match(text, i)
        if found is not None:  # refused unless inside a double-quoted string
            slots.append(_slot(text, found, quote, regex))
            i = found.end()
            continue
        ch = text[i]
        if quote is not None:
            if ch == "\\" and quote != "`":
                i += 1  # the escaped character is part of the string
            elif ch == quote:
                quote = None
        elif ch in "\"'`":
            quote, regex = ch, text[:i].rstrip().endswith(("=~", "!~"))
        elif ch == "#":  # a comment runs to the end of the line
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        else:
            _bracket(ch, i, brackets)
        i += 1
    if quote is not None:
        raise TemplateError(f"unterminated {quote} string")
    if brackets:
        ch, at = brackets[-1]
        raise TemplateError(f"unclosed {ch!r} at character {at + 1}")
    return Template(text, tuple(slots))


def _bracket(ch: str, i: int, brackets: list[tuple[str, int]]) -> None:
    if ch in "([{":
        brackets.append((ch, i))
    elif ch in _CLOSE:
        if not brackets or brackets[-1][0] != _CLOSE[ch]:
            raise TemplateError(f"unbalanced {ch!r} at character {i + 1}")
        brackets.pop()


def _slot(text: str, found: re.Match[str], quote: str | None, regex: bool) -> _Slot:
    name = found.group(1)
    if name not in PLACEHOLDERS:
        known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        raise TemplateError(f"unknown placeholder {{{name}}} (known: {known})")
    if quote != '"':
        raise TemplateError(
            f'{{{name}}} must stand inside a double-quoted label value, e.g. {name}="{{{name}}}"'
        )
    return _Slot(name, found.start(), found.end(), regex)
