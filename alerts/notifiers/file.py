"""Append notifications as JSON lines to a file created with mode 0600."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from alerts.errors import NotifyError
from alerts.notifiers.base import Channel

if TYPE_CHECKING:
    from alerts.model import Notification


class FileNotifier(Channel):
    def __init__(
        self, path: str | os.PathLike[str], *, name: str = "file", send_resolved: bool = True
    ) -> None:
        self._path = Path(path)
        super().__init__(name, send_resolved)

    @property
    def path(self) -> Path:
        return self._path

    def send(self, notifications: Sequence[Notification]) -> None:
        if not notifications:
            return
        lines = "".join(
            json.dumps(
                {
                    "kind": n.kind.value,
                    "status": n.status.value,
                    "fingerprint": n.alert.fingerprint,
                    "sequence": n.sequence,
                    **n.alert.to_dict(),
                },
                sort_keys=True,
            )
            + "\n"
            for n in notifications
        ).encode()
        try:
            # os.open so a new file never exists with wider permissions, even briefly.
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(lines)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise NotifyError(self._name, f"cannot append to {self._path}: {exc.strerror}") from exc

    def __repr__(self) -> str:
        return f"FileNotifier(name={self._name!r}, path={str(self._path)!r})"
