"""What the remote backends share: one httpx client per model and the mapping of HTTP failures
onto the three failure kinds.

==============================================  ====================
what happened                                   raises
==============================================  ====================
connection refused/reset, timeout               `ModelUnavailable`
HTTP 408, 425, 429, 5xx                         `ModelUnavailable` (``retry_after`` from the header)
HTTP 401, 403 (credentials), 404 (no model)     `ModelNotConfigured`
any other 4xx (the endpoint refused this item)  `InvalidModelOutput`
2xx whose body is not the JSON we expect        `InvalidModelOutput`
==============================================  ====================
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import httpx

from aima import __version__
from aima.model_settings import ModelSettings, ModelTask, model_env
from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable

_RETRYABLE = {408, 425, 429}
_SNIPPET = 300


class RemoteBackend:
    """Mixin for a task class: ``_load`` opens the client, ``_unload`` closes it.

    ``transport`` may be set on an instance before it loads (tests pass an `httpx.MockTransport`).
    """

    extra: ClassVar[str] = "remote"
    settings: ModelSettings
    task: ClassVar[ModelTask]
    transport: httpx.BaseTransport | None = None
    _http: httpx.Client | None = None
    _cond: threading.Condition

    @property
    def http(self) -> httpx.Client:
        """The open client (opened by ``_load``, or here for a health probe)."""
        with self._cond:
            if self._http is None:
                self._http = self._open_client()
            return self._http

    def _open_client(self) -> httpx.Client:
        settings = self.settings
        if not settings.endpoint:
            raise ModelNotConfigured(f"no endpoint: set {model_env(self.task, 'endpoint')}")
        headers = {"User-Agent": f"aima/{__version__}", "Accept": "application/json"}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        timeout = httpx.Timeout(settings.timeout_seconds, connect=min(settings.timeout_seconds, 5.0))
        limits = httpx.Limits(
            max_connections=settings.max_workers, max_keepalive_connections=settings.max_workers
        )
        return httpx.Client(
            base_url=settings.endpoint + "/",
            headers=headers,
            timeout=timeout,
            limits=limits,
            transport=self.transport,
        )

    def _close_client(self) -> None:
        with self._cond:
            client, self._http = self._http, None
        if client is not None:
            client.close()

    def _close(self) -> None:
        self._close_client()

    def _unload(self) -> None:
        self._close_client()

    def request(
        self, method: str, path: str, *, json: Any = None, timeout: float | None = None
    ) -> httpx.Response:
        """One request (``path`` relative to the endpoint); transport failures are `ModelUnavailable`."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            return self.http.request(method, path.lstrip("/"), json=json, **extra)
        except httpx.TimeoutException as exc:
            raise ModelUnavailable(f"{method} {path}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ModelUnavailable(f"{method} {path}: cannot reach the endpoint ({exc})") from exc

    def call(self, method: str, path: str, *, json: Any = None, timeout: float | None = None) -> Any:
        """One request; the JSON body of a 2xx answer, or the failure kind of anything else."""
        response = self.request(method, path, json=json, timeout=timeout)
        raise_for_status(response, self.task)
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidModelOutput(f"{method} {path}: the answer is not JSON") from exc


def raise_for_status(response: httpx.Response, task: ModelTask) -> None:
    """Map a non-2xx answer onto the failure kinds (see the module docstring)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    where = f"{response.request.method} {response.request.url.path}: HTTP {status}"
    detail = response.text[:_SNIPPET].strip()
    reason = f"{where} {detail}".strip()
    if status in _RETRYABLE or status >= 500:
        raise ModelUnavailable(reason, retry_after=_retry_after(response))
    if status in (401, 403):
        raise ModelNotConfigured(
            f"{where}: the endpoint refused the credentials (check {model_env(task, 'api_key')})"
        )
    if status == 404:
        raise ModelNotConfigured(
            f"{where}: no such model or route at the endpoint (check {model_env(task, 'model')})"
        )
    raise InvalidModelOutput(f"the endpoint refused the request: {reason}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None
