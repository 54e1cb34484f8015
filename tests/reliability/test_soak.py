"""Short variant of benchmarks/soak.py: the daemon under a busy scripted mix, then idle."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import soak


@pytest.mark.slow
def test_short_soak_has_no_fd_thread_or_memory_growth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~15 s of data changes and alternating healthy/breaching accuracy reports, then 8 s
    idle: every change ran once, alerts fired and resolved, and from the warmed-up start to
    the end the daemon kept its threads, leaked no file descriptors and grew RSS < 10 %."""
    monkeypatch.chdir(tmp_path)  # the driver's MLflow client must not leave ./mlruns
    result = soak(tmp_path, busy_seconds=15, idle_seconds=8, poll_interval=2)
    s, e = result.start, result.end
    assert result.runs == result.data_changes + 1, result
    assert result.notifications >= 2, result  # at least one fired and one resolved
    assert e.threads <= s.threads, (s, e)
    assert e.fds <= s.fds + 1, (s, e)  # one lazily opened handle allowed, not a leak rate
    assert result.rss_growth < 0.10, (s, e)
