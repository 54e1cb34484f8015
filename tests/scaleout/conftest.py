"""The session's distributed stack (tests/scaleout/stack.py), started once, on the one
xdist worker that runs the ``scaleout`` group (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.scaleout.stack import Stack, start_stack


@pytest.fixture(scope="session")
def scaleout_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The workers must not see pytest's temp root: the watcher's live data lives there.
    stack = start_stack(hidden=[tmp_path_factory.getbasetemp()])
    try:
        yield stack
    finally:
        stack.stop()
