"""Identity errors. Messages never contain passwords or tokens."""

from __future__ import annotations

import jwt


class IdentityError(Exception):
    """Base of the identity layer's errors."""


class AuthenticationFailed(IdentityError):
    """Unknown user, wrong password or disabled user: deliberately indistinguishable."""

    def __init__(self) -> None:
        super().__init__("invalid username or password")


class InvalidToken(IdentityError):
    """A token was refused; ``reason`` is a short, non-secret explanation."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RefreshReuse(InvalidToken):
    """An already-used refresh token was presented; its whole family has been revoked."""

    def __init__(self) -> None:
        super().__init__("refresh token reused; session revoked")


class UserExists(IdentityError):
    """The username is taken."""

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"user {username!r} already exists")


class UnknownUser(IdentityError, LookupError):
    """No user has this id."""


class BootstrapRefused(IdentityError):
    """The first admin can only be created while there are no users at all."""


class WeakPassword(ValueError):
    """The password does not meet the policy."""


def decode_reason(exc: jwt.PyJWTError) -> str:
    """A short reason for a PyJWT verification failure."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token not yet valid"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim}"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "algorithm not allowed"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    return "malformed token"
