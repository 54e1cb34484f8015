"""PromQL templates (watcher/monitor/promql.py): what is refused, and hostile values escaped.

The real server's reading of the escaped strings is in
tests/backends/test_prometheus_observations.py (hostile names select their own series)."""

from __future__ import annotations

import pytest

from watcher.monitor.promql import (
    MAX_TEMPLATE,
    TemplateError,
    escape,
    parse_template,
    regex_escape,
)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * (MAX_TEMPLATE + 1), f"longer than {MAX_TEMPLATE}"),
        ('m{model="{modle}"}', r"unknown placeholder \{modle\} \(known: \{model\}"),
        ('m{model="{Model}"}', r"unknown placeholder \{Model\}"),
        ("m{model}", r"\{model\} must stand inside a double-quoted label value"),
        ("m{model='{model}'}", r"\{model\} must stand inside a double-quoted"),
        ("m{model=`{model}`}", r"\{model\} must stand inside a double-quoted"),
        ('m{model="{model}}', 'unterminated " string'),
        ("m{model='x}", "unterminated ' string"),
        ('sum(m{model="{model}"}', r"unclosed '\(' at character 4"),
        ('m{model="{model}"})', r"unbalanced '\)' at character 19"),
        ('m{model="{model}"]', r"unbalanced '\]'"),
        ('rate(m{model="{model}"}[5m)', r"unbalanced '\)'"),
    ],
)
def test_refused(text: str, why: str) -> None:
    with pytest.raises(TemplateError, match=why):
        parse_template(text)


def test_accepted_shapes() -> None:
    """Brackets and quotes inside strings, comments, escapes: not taken for syntax."""
    t = parse_template(
        'sum(rate(m{model="{model}",path="/a(b]{c"}[5m])) # {comment} "\n'
        "/ sum(rate(n{model=\"{model}\",x='\\'}'}[5m]))"
    )
    assert frozenset({"model"}) == t.names
    assert frozenset() == parse_template("up").names


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ('a"} or vector(1) #', 'a\\"} or vector(1) #'),
        ("back\\slash", "back\\\\slash"),
        ('\\"', '\\\\\\"'),
        ("new\nline\ttab\x00nul\x7f", "new\\x0aline\\x09tab\\x00nul\\x7f"),
        ("ünïcødé", "ünïcødé"),
    ],
)
def test_escape_for_a_double_quoted_string(value: str, expected: str) -> None:
    assert expected == escape(value)


def test_regex_escape_takes_every_metacharacter_literally() -> None:
    assert "fraud\\.v2" == regex_escape("fraud.v2")
    assert "\\.\\+\\*\\?\\(\\)\\|\\[\\]\\{\\}\\^\\$\\\\" == regex_escape(".+*?()|[]{}^$\\")


def test_render_escapes_per_context() -> None:
    """``=~`` strings get the RE2 escape first, then the string escape; ``=`` strings only
    the string escape; text around the placeholders is kept as written."""
    t = parse_template('m{model="{model}", version=~"{version}", metric !~ "x|{metric}"} # {model}')
    out = t.render(model='a"b', version="1.0", metric="r2\\")
    assert 'm{model="a\\"b", version=~"1\\\\.0", metric !~ "x|r2\\\\\\\\"} # {model}' == out


@pytest.mark.parametrize(
    "hostile",
    ['"}) or vector(1) #', '\\"}) or up', "\n} or up", '"', "\\", "}{", "{model}"],
)
def test_a_hostile_value_never_leaves_its_string(hostile: str) -> None:
    """Rendered, the query still parses as one string per placeholder: the value cannot
    close the string, so it cannot add a selector, an operator or a comment."""
    t = parse_template('m{model="{model}",v=~"{version}"}')
    rendered = t.render(model=hostile, version=hostile)
    again = parse_template(rendered.replace("{", "(").replace("}", ")"))
    assert frozenset() == again.names  # balanced and every string terminated
    assert rendered.startswith('m{model="') and rendered.endswith('"}')
