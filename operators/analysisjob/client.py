"""`JobClient`: the operator's client of the gateway's job API (``/api/v1/cases/{case}/jobs``).

Settings come from the environment: ``AIMA_OPERATOR_API_URL`` (the gateway, e.g.
``http://aima-api:8080``), a bearer token of a platform service account in ``AIMA_OPERATOR_TOKEN`` or,
re-read whenever the file changes (a rotated Secret), in ``AIMA_OPERATOR_TOKEN_FILE``, and
``AIMA_OPERATOR_TIMEOUT_SECONDS``. Every failure is a `GatewayError`: its ``status`` is the HTTP
status (``None`` when the gateway could not be reached) and ``retryable`` says whether asking again
may succeed; the handlers map it onto Kopf's permanent and temporary errors.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from aima import __version__
from aima.domain import JobPhase, Priority
from aima.settings import SettingsError

ENV_PREFIX = "AIMA_OPERATOR_"
RETRYABLE = frozenset({408, 409, 425, 429})
"""4xx statuses that may succeed when asked again (besides every 5xx and no answer at all)."""


class GatewayError(Exception):
    """The gateway refused a call, failed, or could not be reached (``status`` is then ``None``)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in RETRYABLE


# --- the contract's shapes ----------------------------------------------------------------------


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Cost(_View):
    """An estimate, or what a job actually used."""

    model_s: float | None = None
    wall_s: float | None = None
    cost: float | None = None
    currency: str | None = None
    gpu_profile: str | None = None
    per_step: dict[str, dict[str, float | None]] = Field(default_factory=dict)


class Approval(_View):
    required: bool = False
    approved_by: str | None = None
    approved_at: str | None = None


class ReportRef(_View):
    report_id: str
    version: int


class JobView(_View):
    """A job as the gateway shows it."""

    id: str
    case_id: str
    phase: JobPhase
    priority: str | None = None
    steps: list[str] = Field(default_factory=list)
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    eta_s: float | None = None
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    files: int = 0
    estimate: Cost | None = None
    actual: Cost | None = None
    approval: Approval = Field(default_factory=Approval)
    report: ReportRef | None = None
    reason: str | None = None
    reference: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None


class JobRequest(BaseModel):
    """The body of ``POST /cases/{case}/jobs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    media_ids: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    steps: list[str] | None = None
    priority: Priority = Priority.NORMAL
    context: str | None = None
    language: str | None = None
    require_approval: bool | None = None
    approved: bool = False
    hold_until: datetime | None = None
    reference: str | None = None


# --- settings -------------------------------------------------------------------------------------


class ClientSettings(BaseModel):
    """Where the gateway is and how the operator authenticates to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str = Field(pattern=r"^https?://[^/\s]+")
    token: SecretStr | None = None
    token_file: Path | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read ``AIMA_OPERATOR_*``; raise `SettingsError` (one line naming the variable) if invalid."""
        env = os.environ if environ is None else environ
        values = {
            name: env[ENV_PREFIX + name.upper()]
            for name in cls.model_fields
            if ENV_PREFIX + name.upper() in env
        }
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "api_url"
            raise SettingsError(ENV_PREFIX + field.upper(), str(first["msg"])) from None
        if (settings.token is None) == (settings.token_file is None):
            raise SettingsError(
                f"{ENV_PREFIX}TOKEN", f"set exactly one of {ENV_PREFIX}TOKEN and {ENV_PREFIX}TOKEN_FILE"
            )
        return settings


class BearerToken(httpx.Auth):
    """``Authorization: Bearer`` from a fixed token or from a file, re-read when it changes."""

    def __init__(self, token: str | None = None, token_file: Path | None = None) -> None:
        if (token is None) == (token_file is None):
            raise ValueError("give a token or a token file")
        self._token = token
        self._file = token_file
        self._stamp: float | None = None

    def current(self) -> str:
        if self._file is None:
            assert self._token is not None
            return self._token
        try:
            stamp = self._file.stat().st_mtime
            if stamp != self._stamp or self._token is None:
                self._token = self._file.read_text().strip()
                self._stamp = stamp
        except OSError as exc:
            raise GatewayError(f"cannot read the token file {self._file}: {exc.strerror}") from exc
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.current()}"
        yield request


# --- the client -----------------------------------------------------------------------------------


class JobClient:
    """The job routes of the gateway, one method per route; answers are `JobView` or `Cost`."""

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/api/v1/",
            auth=auth,
            headers={"User-Agent": f"aima-operator/{__version__}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls, settings: ClientSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> JobClient:
        token = settings.token.get_secret_value() if settings.token is not None else None
        return cls(
            settings.api_url,
            BearerToken(token, settings.token_file),
            timeout=settings.timeout_seconds,
            transport=transport,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobClient:
        return cls.from_settings(ClientSettings.from_env(environ))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(self, case_id: str, request: JobRequest) -> tuple[JobView, bool]:
        """Submit a job; also whether it is new (201) rather than the one ``reference`` made (200)."""
        response = await self._call(
            "POST", _jobs(case_id), json=request.model_dump(mode="json", exclude_none=True)
        )
        return _view(response), response.status_code == 201

    async def get(self, case_id: str, job_id: str) -> JobView:
        return _view(await self._call("GET", _job(case_id, job_id)))

    async def list_jobs(self, case_id: str) -> list[JobView]:
        body = _json(await self._call("GET", _jobs(case_id)))
        try:
            return [JobView.model_validate(item) for item in body["items"]]
        except (KeyError, TypeError, ValidationError) as exc:
            raise _unexpected(exc) from None

    async def cancel(self, case_id: str, job_id: str) -> JobView:
        return _view(await self._call("POST", f"{_job(case_id, job_id)}/cancel"))

    async def resume(self, case_id: str, job_id: str) -> JobView:
        return _view(await self._call("POST", f"{_job(case_id, job_id)}/resume"))

    async def approve(self, case_id: str, job_id: str) -> JobView:
        return _view(await self._call("POST", f"{_job(case_id, job_id)}/approve"))

    async def delete(self, case_id: str, job_id: str, *, results: Literal["keep", "delete"]) -> None:
        """Delete a job (cancelling it); ``results="delete"`` also removes its files and results."""
        await self._call("DELETE", _job(case_id, job_id), params={"results": results})

    async def estimate(
        self,
        case_id: str,
        media_ids: list[str],
        steps: list[str] | None = None,
        gpu_profile: str | None = None,
    ) -> Cost:
        payload = {"media_ids": media_ids, "steps": steps, "gpu_profile": gpu_profile}
        response = await self._call("POST", f"{_jobs(case_id)}/estimate", json=payload)
        try:
            return Cost.model_validate(_json(response))
        except ValidationError as exc:
            raise _unexpected(exc) from None

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise GatewayError(f"gateway unreachable: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return response
        raise _problem(method, path, response)


def _jobs(case_id: str) -> str:
    return f"cases/{quote(case_id, safe='')}/jobs"


def _job(case_id: str, job_id: str) -> str:
    return f"{_jobs(case_id)}/{quote(job_id, safe='')}"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise _unexpected(exc) from None


def _view(response: httpx.Response) -> JobView:
    try:
        return JobView.model_validate(_json(response))
    except ValidationError as exc:
        raise _unexpected(exc) from None


def _unexpected(exc: Exception) -> GatewayError:
    """A 2xx answer not in the contract's shape (a gateway of another version): worth asking again."""
    return GatewayError(f"unexpected answer from the gateway: {exc}".splitlines()[0], status=502)


def _problem(method: str, path: str, response: httpx.Response) -> GatewayError:
    """The error for a non-2xx answer, from its problem+json body when it has one."""
    title = detail = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        title = body.get("title") if isinstance(body.get("title"), str) else None
        detail = body.get("detail") if isinstance(body.get("detail"), str) else None
    title = title or response.reason_phrase or "error"
    retry_after = None
    with contextlib.suppress(KeyError, ValueError):
        retry_after = float(response.headers["Retry-After"])
    message = f"{method} /api/v1/{path}: {response.status_code} {title}" + (f": {detail}" if detail else "")
    return GatewayError(
        message, status=response.status_code, title=title, detail=detail, retry_after=retry_after
    )
