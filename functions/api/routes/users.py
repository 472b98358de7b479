"""User administration, for admins of their own tenant: users of another tenant are not found."""

from __future__ import annotations

from fastapi import Response

from aima.access.policy import Action
from aima.identity.errors import AuthenticationFailed, UnknownUser, UserExists
from aima.identity.model import UserRecord
from functions.api.problems import Problem, problem_responses
from functions.api.schemas import HumanCreate, ServiceToken, ServiceTokenRequest, UserCreate, UserId, UserOut
from functions.api.security import Access, RouteTable, api_route, not_found

router = RouteTable(tags=["users"])


@api_route(router, "GET", "/users", action=Action.USER_LIST)
def list_users(access: Access) -> list[UserOut]:
    """The users of the caller's tenant, by username."""
    return [_out(user) for user in access.services.directory.list_users(access.subject.tenant_id)]


@api_route(
    router, "POST", "/users", action=Action.USER_CREATE, status_code=201, responses=problem_responses(409)
)
def create_user(body: UserCreate, access: Access) -> UserOut:
    """Create a user in the caller's tenant: a human with a password, or a service account without."""
    try:
        user = access.services.directory.create_user(
            access.subject.tenant_id,
            body.username,
            body.password if isinstance(body, HumanCreate) else None,
            body.role,
            email=body.email,
            kind=body.kind,
            audit=access.hook(detail={"username": body.username, "role": body.role, "kind": body.kind}),
        )
    except UserExists:
        raise Problem(409, "user-exists", "User exists", "The username is taken.") from None
    except ValueError as exc:  # a weak password (`WeakPassword`) or a bad username
        raise Problem(422, "invalid-user", "Invalid user", str(exc)) from None
    return _out(user)


@api_route(
    router,
    "POST",
    "/users/{user_id}/disable",
    action=Action.USER_DISABLE,
    status_code=204,
    responses=problem_responses(409),
)
def disable_user(user_id: UserId, access: Access) -> Response:
    """Disable a user of the tenant: its tokens stop working at once and its sessions end."""
    _tenant_user(access, user_id)
    if user_id == access.subject.user_id:
        raise Problem(409, "cannot-disable-self", "Conflict", "Admins cannot disable themselves.")
    try:
        access.services.directory.disable(user_id, audit=access.hook(object=f"user/{user_id}"))
    except UnknownUser:
        raise not_found("user") from None
    return Response(status_code=204)


@api_route(
    router,
    "POST",
    "/users/{user_id}/service-token",
    action=Action.USER_CREATE,
    responses=problem_responses(409),
)
def issue_service_token(
    user_id: UserId, access: Access, body: ServiceTokenRequest | None = None
) -> ServiceToken:
    """Issue an access token for an enabled service account of the tenant (it cannot sign in itself)."""
    target = _tenant_user(access, user_id)
    if target.kind != "service" or target.disabled:
        raise Problem(
            409, "not-a-service-account", "Conflict", "Tokens are issued to enabled service accounts."
        )
    ttl = (body or ServiceTokenRequest()).ttl
    services = access.services
    try:
        principal = services.directory.principal(user_id)
    except AuthenticationFailed:  # disabled meanwhile
        raise not_found("user") from None
    token = services.tokens.issue_service_token(principal, ttl)
    access.audit(object=f"user/{user_id}", detail={"issued": "service token", "ttl": ttl})
    return ServiceToken(access_token=token, expires_in=ttl)


def _tenant_user(access: Access, user_id: str) -> UserRecord:
    """The user, if it belongs to the caller's tenant; 404 otherwise."""
    user = access.services.directory.get(user_id)
    if user is None or user.tenant_id != access.subject.tenant_id:
        raise not_found("user")
    return user


def _out(user: UserRecord) -> UserOut:
    return UserOut(
        id=user.id,
        tenant_id=user.tenant_id,
        username=user.username,
        email=user.email,
        role=user.role.value,
        kind=user.kind,
        disabled=user.disabled,
        created_at=user.created_at,
    )
