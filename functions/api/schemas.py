"""Request and response bodies of the public API (pydantic), and the shared parameter types.

Inputs refuse unknown members (422) and NUL characters, which PostgreSQL cannot store, and follow
the kernel's rules (password length, names without surrounding white space) so that what the
schema admits is accepted. Responses
never carry password hashes, token hashes or storage keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from aima.config.schema import SECTIONS
from aima.identity.passwords import MAX_LENGTH, MIN_LENGTH
from aima.identity.users import MAX_USERNAME
from aima.storage.cases import LANGUAGE_PATTERN, MAX_CONTEXT, MAX_NAME

NO_NUL = r"^[^\x00]*$"
TRIMMED = r"^[^\s\x00-\x1f]([^\x00]*[^\s\x00-\x1f])?$"
"""Text without NUL that neither starts nor ends with white space or a control character."""
ID_PATTERN = r"^[A-Za-z0-9_-]{1,36}$"

CaseId = Annotated[str, Path(pattern=ID_PATTERN, description="A case id.")]
UserId = Annotated[str, Path(pattern=ID_PATTERN, description="A user id.")]
ConfigKey = Annotated[
    str,
    Path(
        pattern=r"^[a-z_]{1,50}$",
        description="A configuration section.",
        json_schema_extra={"enum": list(SECTIONS)},
    ),
]
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
GlobalRoleName = Literal["admin", "user", "guest"]
CaseRoleName = Literal["owner", "analyst", "viewer"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth ------------------------------------------------------------------------------------


class TokenPair(BaseModel):
    """An access token (Bearer JWT) and the refresh token that renews it once."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the access token expires.")


class SignInProvider(BaseModel):
    """An external issuer the workspace can sign in through (the browser goes to ``login_url``)."""

    name: str = Field(description="What the sign-in button calls the issuer.")
    login_url: str = Field(description="Where the browser starts the sign-in (add ?return_to=/path).")


class SignInOptions(BaseModel):
    """How one may sign in to this gateway."""

    password: bool = True
    oidc: SignInProvider | None = None


class RefreshRequest(_In):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class LogoutRequest(_In):
    """Without a refresh token, every session of the caller ends."""

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class Jwks(BaseModel):
    """A JSON Web Key Set: the public keys that verify access tokens."""

    keys: list[dict[str, str]]


class Me(BaseModel):
    user_id: str
    tenant_id: str
    username: str
    role: GlobalRoleName
    kind: Literal["human", "service"]
    auth: Literal["password", "oidc", "service", "local"]


# --- users -----------------------------------------------------------------------------------


class UserOut(BaseModel):
    id: str
    tenant_id: str
    username: str
    email: str | None
    role: GlobalRoleName
    kind: Literal["human", "service"]
    disabled: bool
    created_at: datetime


Username = Annotated[str, StringConstraints(min_length=1, max_length=MAX_USERNAME, pattern=TRIMMED)]
Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$")]


class HumanCreate(_In):
    """A person, who signs in with a password (12 characters or more)."""

    username: Username
    password: Annotated[str, StringConstraints(min_length=MIN_LENGTH, max_length=MAX_LENGTH)]
    role: GlobalRoleName = "user"
    email: Email | None = None
    kind: Literal["human"] = "human"


class ServiceCreate(_In):
    """A service account: no password; an admin issues its tokens."""

    username: Username
    role: GlobalRoleName = "user"
    email: Email | None = None
    kind: Literal["service"]


UserCreate = HumanCreate | ServiceCreate


class ServiceTokenRequest(_In):
    ttl: int = Field(default=3600, ge=60, le=86400, description="Lifetime in seconds.")


class ServiceToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int


# --- cases -----------------------------------------------------------------------------------

CaseName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=TRIMMED)]
CaseLanguage = Annotated[
    str,
    StringConstraints(pattern=LANGUAGE_PATTERN),
    Field(
        description="An ISO 639-1 or 639-3 code (`de`, `gsw`): the case's speech is transcribed in this "
        "language instead of the one detected per segment.",
        examples=["de"],
    ),
]
CaseContext = Annotated[
    str,
    StringConstraints(max_length=MAX_CONTEXT, pattern=r"^[^\x00-\x08\x0b-\x1f]*$"),
    Field(
        description=f"The analyst's context for the case, sent with its analysis: free text of at most "
        f"{MAX_CONTEXT} characters, lines and tabs allowed, no other control characters; surrounding "
        "white space is trimmed and a blank text stores none.",
        examples=["Two people were reported missing after the harbour fire on 12 May."],
    ),
]


class CaseCreate(_In):
    name: CaseName
    retention_days: StrictInt | None = Field(default=None, ge=1, le=36500)  # true is not 1
    language: CaseLanguage | None = None
    context: CaseContext | None = None


class CaseUpdate(_In):
    """Only the members sent change: ``name`` renames the case (it cannot be null); ``language``
    sets the language its speech is transcribed in, ``null`` clears it (detection per segment);
    ``context`` sets the analyst's context, ``null`` clears it."""

    name: CaseName | SkipJsonSchema[None] = None
    language: CaseLanguage | None = None
    context: CaseContext | None = None

    @field_validator("name")
    @classmethod
    def _name_is_no_null(cls, name: str | None) -> str:
        if name is None:  # a sent null: an absent name is the default and not validated
            raise ValueError("a case always has a name; leave it out to keep it")
        return name


class CaseOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    status: str
    retention_days: int | None
    language: str | None = Field(description="The language the case's speech is transcribed in, if forced.")
    context: str | None = Field(description="The analyst's context for the case, if given.")
    created_at: datetime
    updated_at: datetime


class MemberIn(_In):
    role: CaseRoleName


class MemberOut(BaseModel):
    user_id: str
    username: str
    role: CaseRoleName
    created_at: datetime


class MediaOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from the repository's `aima.domain.Media`

    id: str
    case_id: str
    sha256: str
    size: int
    content_type: str
    kind: str | None
    filename: str | None
    status: str
    failure_reason: str | None
    metadata: dict[str, Any] | None
    created_at: datetime


class CaseExport(BaseModel):
    """Everything the relational store holds about a case, as of ``exported_at``."""

    case: CaseOut
    members: list[MemberOut]
    media: list[MediaOut]
    exported_at: datetime
    exported_by: str


# --- uploads (answered by the ingest function, relayed unchanged) -----------------------------


class UploadResult(BaseModel):
    """A stored file, or the file of the case it duplicates (``duplicate_of``; then no job)."""

    media_id: str
    sha256: str
    size: int
    kind: str | None
    content_type: str
    duplicate_of: str | None
    job_id: str | None
    filename: str | None


class BulkEntry(BaseModel):
    """One file of a bulk upload: its result, or the problem it was refused with."""

    filename: str | None
    status: Literal["stored", "duplicate", "refused"]
    result: UploadResult | None = None
    error: dict[str, Any] | None = None


class BulkUploadResult(BaseModel):
    parent_job_id: str
    results: list[BulkEntry]


class UploadSession(BaseModel):
    """A resumable (tus) upload: send its bytes with ``PATCH`` at ``offset`` to its ``Location``, in
    bodies of any size."""

    upload_id: str
    offset: int
    length: int


# --- audit -----------------------------------------------------------------------------------


class AuditRecord(BaseModel):
    seq: int
    tenant_id: str
    time: datetime
    actor: str
    action: str
    case_id: str | None
    object: str | None
    outcome: Literal["allowed", "denied", "failed"]
    request_id: str | None
    client: str | None
    trace_id: str | None
    detail: dict[str, Any] | None
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """Matching records, newest first."""

    records: list[AuditRecord]
    limit: int
    offset: int


class AuditVerification(BaseModel):
    """The result of checking the tenant's hash chain; ``problems`` is empty when it is intact."""

    ok: bool
    problems: list[str]


# --- configuration ---------------------------------------------------------------------------


class ConfigValue(BaseModel):
    """A section as it applies to the tenant; ``version`` 0 means inherited (no tenant override)."""

    key: str
    value: dict[str, Any]
    version: int


class ConfigVersion(BaseModel):
    key: str
    version: int
    value: dict[str, Any]
    changed_by: str
    changed_at: datetime
