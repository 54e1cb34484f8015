"""Trigger backend for Airflow 3: submit a DAG run over the REST API v2 (httpx).

Exactly-once rests on the run id: it is derived from the dataset hash
(:func:`watcher.trigger.base.run_id_for`), so a repeated submit answers 409 and
counts as delivered.
This module never retries on its own (the outbox does, with backoff); it only
sorts failures into permanent (:class:`TriggerError`) and retryable
(:class:`TriggerUnavailable`), and re-authenticates once when the token is refused
(401 missing/expired, or 403 "Invalid JWT token" after an api-server secret change).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from alerts.redaction import redact
from watcher.errors import ConfigError, TriggerError
from watcher.ports import SubmitResult, TriggerUnavailable
from watcher.runtime.logging import register_secrets

log = logging.getLogger(__name__)

DEFAULT_DAG_ID = "train_pipeline"
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class TriggerAuthError(TriggerError):
    """Airflow rejected the credentials or token; retrying will not help."""


def _detail(resp: httpx.Response) -> str:
    """The server's error detail, compact (FastAPI gives a string or a list of dicts)."""
    try:
        body = resp.json()
    except ValueError:
        return redact(resp.text)[:500] or resp.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{where}: {item.get('msg', item)}" if where else str(item.get("msg")))
            else:
                parts.append(str(item))
        return redact("; ".join(parts))
    # Redact before cutting: a cut can split an echoed secret past recognition.
    return redact(str(detail))[:500]


class AirflowTrigger:
    """Submits and follows runs of one DAG on an Airflow 3 api-server."""

    serial = False  # Airflow queues runs; the DAG's max_active_runs orders them

    def __init__(
        self,
        base_url: str,
        dag_id: str = DEFAULT_DAG_ID,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``token`` (a static bearer token) wins over ``username``/``password``.

        A float ``timeout`` bounds every phase of each call, connect capped at 5 s.
        """
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"Airflow base_url must start with http:// or https://, got {base_url!r}"
            )
        if not dag_id:
            raise ConfigError("Airflow dag_id must not be empty")
        if token is None and not (username and password is not None):
            raise ConfigError("Airflow trigger needs either a token or both username and password")
        if isinstance(timeout, int | float):
            if timeout <= 0:
                raise ConfigError(f"Airflow timeout must be > 0 seconds, got {timeout!r}")
            timeout = httpx.Timeout(timeout, connect=min(5.0, timeout))
        self.base_url = base_url.rstrip("/")
        self.dag_id = dag_id
        self._username = username
        self._password = password
        self._token = token
        self._static_token = token is not None
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def __repr__(self) -> str:  # never show credentials
        return f"AirflowTrigger({self.base_url!r}, dag_id={self.dag_id!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AirflowTrigger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------

    def _send(self, method: str, path: str, json: object = None) -> httpx.Response:
        """One request; network failures and timeouts become TriggerUnavailable."""
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            return self._client.request(method, path, json=json, headers=headers)
        except httpx.TimeoutException as exc:
            raise TriggerUnavailable(
                f"Airflow at {self.base_url} timed out ({type(exc).__name__}) on {method} {path}"
            ) from exc
        except httpx.TransportError as exc:
            raise TriggerUnavailable(
                f"Airflow at {self.base_url} is unreachable ({type(exc).__name__}: {exc})"
            ) from exc

    def _authenticate(self) -> None:
        if self._static_token:
            raise TriggerAuthError(f"Airflow at {self.base_url} rejected the configured token")
        self._token = None
        resp = self._send(
            "POST", "/auth/token", {"username": self._username, "password": self._password}
        )
        if resp.status_code in (200, 201):
            token = _json_dict(resp).get("access_token")
            if not isinstance(token, str) or not token:
                raise TriggerUnavailable(f"Airflow at {self.base_url} sent no access_token")
            self._token = token
            register_secrets([token])  # config secrets are registered by the app; this one is ours
            log.info("authenticated to Airflow at %s as %s", self.base_url, self._username)
            return
        if resp.status_code in (400, 401, 403):
            raise TriggerAuthError(
                f"Airflow at {self.base_url} rejected the credentials for user "
                f"{self._username!r} (HTTP {resp.status_code})"
            )
        if resp.status_code == 404:
            raise TriggerError(f"no Airflow token endpoint at {self.base_url}/auth/token")
        raise self._error_for(resp, "authenticating")

    def _request(self, method: str, path: str, json: object = None) -> httpx.Response:
        """Authenticated request; when the token is refused, re-authenticate and retry once."""
        if self._token is None:
            self._authenticate()
        resp = self._send(method, path, json)
        if _token_refused(resp):
            log.info("Airflow refused the token (HTTP %s); re-authenticating", resp.status_code)
            self._authenticate()
            resp = self._send(method, path, json)
            if _token_refused(resp):
                raise TriggerAuthError(
                    f"Airflow at {self.base_url} still refuses a fresh token "
                    f"(HTTP {resp.status_code}: {_detail(resp)})"
                )
        return resp

    def _error_for(self, resp: httpx.Response, doing: str) -> TriggerError:
        """The error for a non-success answer; 5xx and 429 are retryable."""
        code = resp.status_code
        if code >= 500 or code == 429:
            return TriggerUnavailable(
                f"Airflow at {self.base_url} answered {code} while {doing}: {_detail(resp)}"
            )
        if code == 404:
            return TriggerError(f"DAG {self.dag_id!r} not found on {self.base_url}")
        if code == 403:
            return TriggerAuthError(
                f"Airflow at {self.base_url} forbids {doing} for this user: {_detail(resp)}"
            )
        return TriggerError(
            f"Airflow at {self.base_url} refused {doing} (HTTP {code}): {_detail(resp)}"
        )

    # -- API -----------------------------------------------------------------------

    def _dag_path(self) -> str:
        return f"/api/v2/dags/{quote(self.dag_id, safe='')}"

    def submit(self, run_id: str, conf: Mapping[str, Any]) -> SubmitResult:
        """Create DAG run ``run_id``; an existing run with that id counts as delivered."""
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf)}
        resp = self._request("POST", f"{self._dag_path()}/dagRuns", body)
        if resp.status_code in (200, 201):
            state = _json_dict(resp).get("state")
            log.info("triggered %s run %s", self.dag_id, run_id)
            return SubmitResult(run_id=run_id, created=True, state=state)
        if resp.status_code == 409:
            log.info("%s run %s already exists; counted as delivered", self.dag_id, run_id)
            return SubmitResult(run_id=run_id, created=False)
        raise self._error_for(resp, f"triggering run {run_id!r}")

    def cancel(self, run_id: str) -> None:
        """Nothing: a timed-out Airflow run is no longer followed, but left to Airflow."""

    def exit_code(self, run_id: str) -> int | None:
        return None  # Airflow runs have no exit code

    def summary(self, run_id: str) -> dict[str, Any] | None:
        return None  # the run's results are in MLflow

    def is_paused(self) -> bool:
        """Whether the DAG is paused (runs on a paused DAG stay queued forever)."""
        resp = self._request("GET", self._dag_path())
        if resp.status_code != 200:
            raise self._error_for(resp, f"reading DAG {self.dag_id!r}")
        paused = _json_dict(resp).get("is_paused")
        if not isinstance(paused, bool):
            raise TriggerUnavailable(
                f"Airflow at {self.base_url} sent no is_paused for {self.dag_id!r}"
            )
        return paused

    def run_state(self, run_id: str) -> str | None:
        """State of a run (queued, running, success, failed); None when Airflow has no such run.

        Airflow answers 404 both for an unknown run and an unknown DAG; both mean "no run".
        """
        resp = self._request("GET", f"{self._dag_path()}/dagRuns/{quote(run_id, safe='')}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._error_for(resp, f"reading run {run_id!r}")
        state = _json_dict(resp).get("state")
        return str(state) if state is not None else None


def _token_refused(resp: httpx.Response) -> bool:
    """Airflow answers 401 for a missing or expired token and 403 "Invalid JWT token" for
    one it can't verify (e.g. signed before the api-server's JWT secret changed)."""
    if resp.status_code == 401:
        return True
    return resp.status_code == 403 and _json_dict(resp).get("detail") == "Invalid JWT token"


def _json_dict(resp: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, or {} when it is not one (proxies, HTML error pages)."""
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
