"""Issue 15, round 2 of hardening: what a hostile week of operations broke.

One test (or a few) per item, each failing on the code before its fix. Bad-input cases
(validation gaps, item 14) live in the corpus, tests/reliability/test_bad_input.py.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.dispatcher import Backoff
from alerts.notifiers.webhook import sign, verify_signature
from tests.watch.conftest import OutageTrigger, drive, make_config, runs
from watcher.datawatch import DataWatcher
from watcher.http import health_body
from watcher.outbox import backoff
from watcher.state import iso, open_state
from watcher.triggers import build_trigger

# -- 1. A long trigger outage ---------------------------------------------------------------


def test_backoff_is_finite_for_any_attempt_count() -> None:
    """The outbox and the alert dispatcher share one backoff: capped at any attempt count
    (the outbox's uncapped 2.0 ** (n - 1) overflowed at n = 1,025), even with a 100-year
    base where the dispatcher's timedelta product overflowed."""
    assert 600.0 == backoff(10_000, 0.001, 600, 1.0)
    assert 300.0 == backoff(10**9, 5, 600, 0.0)
    century = timedelta(days=36_500)
    assert century == Backoff(century, century).delay(10**6, 1.0)


def test_outage_of_10000_attempts_keeps_retrying_and_fails_healthz(tmp_path: Path) -> None:
    """A trigger whose delivery already failed 9,999 times (set in the DB, as after weeks of
    Airflow outage): the next pass retries it (attempt 10,000, delay capped at retry_max),
    /healthz reports the data check failing with the error, and when the backend is back
    the run is delivered once."""
    cfg = make_config(tmp_path)
    data = cfg.watch.data_dir
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,1\n")
    state = open_state(cfg.state.dir)
    trigger = OutageTrigger(build_trigger(cfg))
    trigger.down = True
    dw = DataWatcher(cfg, state, trigger=trigger, progress=False)
    try:
        dw.start()
        drive(dw, lambda: trigger.refused >= 1)
        assert health_body([dw.health()])[0], "one failed attempt is not yet an outage"
        now = datetime.now(UTC)
        state.conn.execute(
            "UPDATE outbox SET attempts = 9999, next_attempt_at = ? WHERE status = 'pending'",
            (iso(now),),
        )
        drive(dw, lambda: dw.outbox.pending()[0].attempts == 10_000)
        row = dw.outbox.pending()[0]
        retry_in = datetime.fromisoformat(row.next_attempt_at) - now
        assert timedelta(0) < retry_in <= timedelta(seconds=cfg.trigger.retry_max + 30)
        ok, doc = health_body([dw.health()])
        assert not ok
        assert doc["failing"]["data"]["delivery_attempts"] == 10_000
        assert "injected outage" in str(doc["failing"]["data"]["delivery_error"])
        trigger.down = False
        drive(dw, lambda: len(runs(tmp_path)) == 1, timeout=30)
        assert health_body([dw.health()])[0]
    finally:
        dw.stop()
        state.close()


# -- 8. Webhook signature verification ------------------------------------------------------

_HOOK_SECRET = "hook-secret-0123"


def test_verify_signature_refuses_replays_by_default() -> None:
    """The README's call, no max_age_s: a request signed 30 days ago is refused, one from
    a minute ago accepted (the default window is 5 minutes)."""
    now = time.time()
    for age, accepted in ((60, True), (30 * 86400, False), (-30 * 86400, False)):
        ts = str(int(now - age))
        header = sign(_HOOK_SECRET, ts, b"{}")
        assert accepted == verify_signature(_HOOK_SECRET, ts, b"{}", header), age


@pytest.mark.parametrize(
    ("timestamp", "header"),
    [
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("1e400", None),
        ("", None),
        ("١٧٦٧٢٦٨٨٠٠", None),  # Arabic-Indic digits: float() reads them
        (None, "sha256=é"),  # non-ASCII header: compare_digest raised TypeError
        (None, "sha256=\udcff"),
        (None, ""),
    ],
)
def test_verify_signature_is_false_on_garbage(timestamp: str | None, header: str | None) -> None:
    """Non-finite, empty or non-ASCII timestamps and non-ASCII headers: False, no raise."""
    ts = timestamp if timestamp is not None else "1000"
    good = sign(_HOOK_SECRET, ts.encode("utf-8", "replace").decode(), b"{}")
    assert not verify_signature(
        _HOOK_SECRET, ts, b"{}", good if header is None else header, now=1000.0
    )
    assert not verify_signature(
        _HOOK_SECRET, ts, b"{}", good if header is None else header, max_age_s=math.inf
    )
