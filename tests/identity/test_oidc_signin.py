"""The parts of the OIDC sign-in that need no provider: where it may send the browser afterwards, and
the settings it refuses. The whole flow against a real provider: tests/web/test_oidc.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from aima.identity.oidc_signin import oidc_signin_from_settings, safe_return_path
from aima.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/cases", "/cases"),
        ("/cases/abc/media/def?t=12", "/cases/abc/media/def?t=12"),
        (None, "/"),
        ("", "/"),
        ("cases", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/api/v1/cases", "/"),
        ("/cases\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_only_paths_of_the_workspace_are_returned_to(asked: str | None, kept: str) -> None:
    assert safe_return_path(asked) == kept


def test_a_client_id_without_an_issuer_is_refused_naming_the_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, oidc_client_id="aima-web")
    with pytest.raises(SettingsError, match="AIMA_OIDC_CLIENT_ID"):
        oidc_signin_from_settings(settings, None, keyring=None)  # type: ignore[arg-type]


def test_no_client_id_means_no_oidc_sign_in(tmp_path: Path) -> None:
    assert oidc_signin_from_settings(Settings(data_dir=tmp_path), None, keyring=None) is None  # type: ignore[arg-type]
