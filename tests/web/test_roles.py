"""One browser test per role on a case: its owner, an analyst, a viewer (case roles) and a tenant admin
(global role, no membership). Each signs in through the form, opens the case's pages (files, jobs,
members, findings), checks that the controls shown are those the role may use, and asks the API
directly, with that user's token, for something the interface does not offer it: the API refuses.
The owner shares the case on the Members page and meets the refusal of demoting or removing the
case's last owner; the admin shares through the tenant's user list. Every case here is made through
the API and stays empty or holds one uploaded, unanalysed file, so no analysis runs."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.support import Server, strong_password

pytestmark = pytest.mark.timeout(120)

LAST_OWNER = "Case would have no owner"
NO_UPLOAD = "Your role in this case does not allow uploads."
MAY_NOT_SHARE = "Only the case's owners and administrators can change its members."
NO_FINDINGS = "No findings in this case yet."


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password: str


@dataclass(frozen=True)
class Cast:
    """The users of the module: a case owner, an analyst, a viewer and a second tenant admin."""

    owner: User
    analyst: User
    viewer: User
    admin: User


def new_user(server: Server, prefix: str, role: str = "user") -> User:
    username, password = f"{prefix}-{uuid.uuid4().hex[:6]}", strong_password()
    made = server.add_user(username, password, role)
    return User(str(made["id"]), username, password)


@pytest.fixture(scope="module")
def cast(server: Server) -> Cast:
    return Cast(
        owner=new_user(server, "owner"),
        analyst=new_user(server, "analyst"),
        viewer=new_user(server, "viewer"),
        admin=new_user(server, "tenant-admin", "admin"),
    )


def shared_case(server: Server, cast: Cast) -> tuple[str, str]:
    """A new case of the owner (made with the owner's token), shared with the analyst and the viewer;
    its id and name."""
    name = f"Roles {uuid.uuid4().hex[:6]}"
    owner_token = server.token(cast.owner.username, cast.owner.password)
    case_id = server.create_case(name, token=owner_token)
    server.share(case_id, cast.analyst.id, "analyst", token=owner_token)
    server.share(case_id, cast.viewer.id, "viewer", token=owner_token)
    return case_id, name


def token_of(server: Server, user: User) -> str:
    return server.token(user.username, user.password)


def assert_refused(answer: httpx.Response) -> None:
    """A 403 or 404 answered as problem+json."""
    assert answer.status_code in (403, 404), answer.text
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    assert answer.json()["title"], answer.text


# --- the pages -----------------------------------------------------------------------------------


def sign_in(page: Page, user: User) -> None:
    page.goto("/login")
    page.get_by_label("Username", exact=True).fill(user.username)
    page.get_by_label("Password", exact=True).fill(user.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Cases", level=1)).to_be_visible()


def open_case(page: Page, case_id: str, name: str, *, may_delete: bool) -> None:
    """From the case list (where the delete button shows only if ``may_delete``) into the case."""
    link = page.get_by_role("link", name=name, exact=True)
    expect(link).to_be_visible()
    expect(page.get_by_role("button", name=f"Delete {name}", exact=True)).to_have_count(
        1 if may_delete else 0
    )
    link.click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/?$"))
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()


def tab(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Case").get_by_role("link", name=name, exact=True).click()
    expect(
        page.get_by_role("navigation", name="Case").get_by_role("link", name=name, exact=True)
    ).to_have_attribute("aria-current", "page")


def check_files(page: Page, *, may_upload: bool) -> None:
    tab(page, "Files")
    if may_upload:
        expect(page.get_by_role("region", name="Drop files here")).to_be_visible()
        expect(page.get_by_label("Choose files", exact=True)).to_have_count(1)
    else:
        expect(page.get_by_text(NO_UPLOAD, exact=True)).to_be_visible()
        expect(page.get_by_label("Choose files", exact=True)).to_have_count(0)
        expect(page.locator("input[type=file]")).to_have_count(0)


def check_jobs(page: Page) -> None:
    tab(page, "Jobs")
    expect(page.get_by_text("No jobs in this case yet.", exact=True)).to_be_visible()


def check_findings(page: Page, *, may_review: bool) -> None:
    tab(page, "Findings")
    expect(page.get_by_text(NO_FINDINGS, exact=True)).to_be_visible()
    if not may_review:
        for action in ("Confirm", "Reject", "Unclear", "Save decision"):
            expect(page.get_by_role("button", name=action, exact=True)).to_have_count(0)


def members_table(page: Page) -> None:
    tab(page, "Members")
    expect(page.get_by_role("heading", name="Members of the case", level=2)).to_be_visible()
    expect(page.get_by_role("table", name="Members of the case")).to_be_visible()


def member_row(page: Page, username: str, role: str) -> None:
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=username, exact=True))
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell").nth(1)).to_have_text(role)


def no_share_controls(page: Page, cast: Cast) -> None:
    expect(page.get_by_text(MAY_NOT_SHARE, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Share", exact=True)).to_have_count(0)
    expect(page.get_by_role("heading", name="Share the case")).to_have_count(0)
    for user in (cast.owner, cast.analyst, cast.viewer):
        expect(page.get_by_role("button", name=f"Remove {user.username}", exact=True)).to_have_count(0)
        expect(page.get_by_label(f"Role of {user.username}", exact=True)).to_have_count(0)


def share(page: Page, user: User, role: str) -> None:
    """Share with ``user`` (chosen or typed already) as ``role``: the page confirms and lists them."""
    page.get_by_label("Role", exact=True).select_option(role)
    page.get_by_role("button", name="Share", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(f"Shared with {user.username} as {role}.")
    member_row(page, user.username, role)


# --- one test per role ---------------------------------------------------------------------------


def test_the_owner_shares_the_case_and_cannot_drop_the_last_owner(
    page: Page, server: Server, cast: Cast
) -> None:
    case_id, name = shared_case(server, cast)
    newcomer = new_user(server, "newcomer")
    sign_in(page, cast.owner)
    open_case(page, case_id, name, may_delete=True)
    check_files(page, may_upload=True)
    check_jobs(page)
    check_findings(page, may_review=True)

    members_table(page)
    member_row(page, cast.owner.username, "owner")
    member_row(page, cast.analyst.username, "analyst")
    member_row(page, cast.viewer.username, "viewer")
    expect(page.get_by_role("button", name=f"Remove {cast.viewer.username}", exact=True)).to_be_enabled()
    # an owner may not list the tenant's users: a user id is typed, not chosen
    expect(page.get_by_label("User", exact=True)).to_have_count(0)
    page.get_by_label("User id", exact=True).fill(newcomer.id)
    share(page, newcomer, "analyst")

    page.get_by_label(f"Role of {cast.owner.username}", exact=True).select_option("viewer")
    page.get_by_role("button", name=f"Change role of {cast.owner.username}", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text(LAST_OWNER)
    member_row(page, cast.owner.username, "owner")

    page.get_by_role("button", name=f"Remove {cast.owner.username}", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text(LAST_OWNER)
    member_row(page, cast.owner.username, "owner")

    page.get_by_role("button", name=f"Remove {newcomer.username}", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(f"{newcomer.username} is no longer a member.")
    expect(page.get_by_role("rowheader", name=newcomer.username, exact=True)).to_have_count(0)

    # hidden from an owner: the tenant's user list (the interface asks for an id instead)
    assert_refused(server.api("GET", "/users", token=token_of(server, cast.owner)))
    members = server.api("GET", f"/cases/{case_id}/members").json()
    assert {m["username"]: m["role"] for m in members} == {
        cast.owner.username: "owner",
        cast.analyst.username: "analyst",
        cast.viewer.username: "viewer",
    }


def test_an_analyst_uploads_and_reviews_but_does_not_share_or_delete(
    page: Page, server: Server, cast: Cast
) -> None:
    case_id, name = shared_case(server, cast)
    sign_in(page, cast.analyst)
    open_case(page, case_id, name, may_delete=False)
    check_files(page, may_upload=True)
    check_jobs(page)
    check_findings(page, may_review=True)
    members_table(page)
    member_row(page, cast.analyst.username, "analyst")
    no_share_controls(page, cast)

    token = token_of(server, cast.analyst)
    assert_refused(
        server.api("PUT", f"/cases/{case_id}/members/{cast.viewer.id}", token=token, json={"role": "owner"})
    )
    assert_refused(server.api("DELETE", f"/cases/{case_id}/members/{cast.viewer.id}", token=token))
    assert_refused(server.api("DELETE", f"/cases/{case_id}", token=token))
    assert server.api("GET", f"/cases/{case_id}").status_code == 200


def test_a_viewer_only_reads(page: Page, server: Server, cast: Cast) -> None:
    case_id, name = shared_case(server, cast)
    sign_in(page, cast.viewer)
    open_case(page, case_id, name, may_delete=False)
    expect(page.get_by_role("button", name=re.compile(r"^Delete\b"))).to_have_count(0)
    check_files(page, may_upload=False)
    check_jobs(page)
    for action in ("Approve", "Cancel job", "Resume job"):
        expect(page.get_by_role("button", name=action, exact=True)).to_have_count(0)
    check_findings(page, may_review=False)
    members_table(page)
    member_row(page, cast.viewer.username, "viewer")
    no_share_controls(page, cast)

    token = token_of(server, cast.viewer)
    tus = {"Tus-Resumable": "1.0.0", "Upload-Length": "4", "Upload-Metadata": "filename YS50eHQ="}
    assert_refused(server.api("POST", f"/cases/{case_id}/uploads", token=token, headers=tus))
    review = {"decision": "confirmed", "reason": "looks right"}
    finding = uuid.uuid4().hex
    assert_refused(server.api("PUT", f"/cases/{case_id}/findings/{finding}/review", token=token, json=review))
    assert_refused(server.api("PATCH", f"/cases/{case_id}", token=token, json={"name": "renamed"}))
    assert_refused(
        server.api("PUT", f"/cases/{case_id}/members/{cast.viewer.id}", token=token, json={"role": "owner"})
    )
    assert_refused(server.api("DELETE", f"/cases/{case_id}", token=token))


def test_a_tenant_admin_shares_from_the_user_list_without_being_a_member(
    page: Page, server: Server, cast: Cast
) -> None:
    case_id, name = shared_case(server, cast)
    newcomer = new_user(server, "picked")
    sign_in(page, cast.admin)
    open_case(page, case_id, name, may_delete=True)
    check_files(page, may_upload=True)
    check_jobs(page)
    check_findings(page, may_review=True)

    members_table(page)
    expect(page.get_by_role("rowheader", name=cast.admin.username, exact=True)).to_have_count(0)
    page.get_by_label("User", exact=True).select_option(label=f"{newcomer.username} (user)")
    share(page, newcomer, "viewer")

    page.get_by_label(f"Role of {newcomer.username}", exact=True).select_option("analyst")
    page.get_by_role("button", name=f"Change role of {newcomer.username}", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(f"{newcomer.username} is now analyst.")
    member_row(page, newcomer.username, "analyst")

    # the last owner binds admins too, in the interface and in the API
    page.get_by_role("button", name=f"Remove {cast.owner.username}", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text(LAST_OWNER)
    token = token_of(server, cast.admin)
    demoted = server.api(
        "PUT", f"/cases/{case_id}/members/{cast.owner.id}", token=token, json={"role": "analyst"}
    )
    assert demoted.status_code == 409, demoted.text
    assert demoted.json()["title"] == LAST_OWNER
    # and a guest may be a viewer only, whoever shares
    guest = new_user(server, "guest", "guest")
    refused = server.api("PUT", f"/cases/{case_id}/members/{guest.id}", token=token, json={"role": "analyst"})
    assert refused.status_code == 422, refused.text
