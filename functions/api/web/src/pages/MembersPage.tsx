// A case's members (GET .../members) and, for those who may share the case (owners, admins:
// case.share), sharing it with a user, changing a member's role and ending a membership
// (PUT / DELETE .../members/{user_id}). The API is the judge: a refusal (e.g. 409 last-owner) is
// shown with its problem title and detail.
import type { JSX } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, type MemberOut, type Schemas } from "../api/client";
import { formatDate, useI18n } from "../i18n";
import { navigate } from "../router";
import { rights, useMe, type CaseRole } from "../session";

type Role = MemberOut["role"];
type UserOut = Schemas["UserOut"];
const ROLES: readonly Role[] = ["viewer", "analyst", "owner"];

interface Message {
  kind: "done" | "refused";
  text: string;
}

/** "Title: detail" of a problem+json answer (the title alone without a detail; else the status). */
function refusal(error: unknown, response: Response): string {
  if (error !== null && typeof error === "object") {
    const problem = error as { title?: unknown; detail?: unknown };
    const title = typeof problem.title === "string" ? problem.title : "";
    const detail = typeof problem.detail === "string" ? problem.detail : "";
    if (title && detail) return `${title}: ${detail}`;
    if (title || detail) return title || detail;
  }
  return `${response.status} ${response.statusText}`.trim();
}

export function MembersPage(props: { caseId: string }): JSX.Element {
  const { t, lang } = useI18n();
  const me = useMe();
  const [members, setMembers] = useState<MemberOut[] | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [users, setUsers] = useState<UserOut[] | null>(null);
  const [message, setMessage] = useState<Message | null>(null);
  const [busy, setBusy] = useState(false);
  const [chosen, setChosen] = useState<Record<string, Role>>({});
  const [userId, setUserId] = useState("");
  const [newRole, setNewRole] = useState<Role>("viewer");
  const heading = useRef<HTMLHeadingElement>(null);
  const path = { case_id: props.caseId };
  const admin = me?.role === "admin";

  const load = useCallback(async () => {
    const { data, error, response } = await api.GET("/api/v1/cases/{case_id}/members", {
      params: { path: { case_id: props.caseId } },
    });
    if (!data) {
      setLoadError(refusal(error, response));
      return;
    }
    setLoadError(null);
    setMembers(data);
    setChosen({});
  }, [props.caseId]);

  useEffect(() => {
    void load();
  }, [load]);

  // Only admins may list the tenant's users (user.list); everyone else types a user id.
  useEffect(() => {
    if (!admin) return;
    let live = true;
    void api.GET("/api/v1/users").then(({ data }) => live && setUsers(data ?? null));
    return () => {
      live = false;
    };
  }, [admin]);

  const myRole: CaseRole = members?.find((member) => member.user_id === me?.user_id)?.role ?? null;
  const mayShare = members !== null && rights(me, myRole).share;
  const roleName = (role: string) => t.caseRoles[role] ?? role;

  // Buttons stay enabled while a request runs (a disabled button would drop the keyboard focus);
  // a second request waits for the first to end.
  const put = async (id: string, role: Role, done: (name: string) => string) => {
    if (busy) return false;
    setBusy(true);
    setMessage(null);
    const { data, error, response } = await api.PUT("/api/v1/cases/{case_id}/members/{user_id}", {
      params: { path: { ...path, user_id: id } },
      body: { role },
    });
    setBusy(false);
    if (!data) {
      setMessage({ kind: "refused", text: t.refused(refusal(error, response)) });
      return false;
    }
    setMessage({ kind: "done", text: done(data.username) });
    await load();
    return true;
  };

  const share = async (event: Event) => {
    event.preventDefault();
    const id = userId.trim();
    if (!id) return;
    const role = newRole;
    if (await put(id, role, (name) => t.shared(name, roleName(role)))) setUserId("");
  };

  const change = (member: MemberOut) => {
    const role = chosen[member.user_id] ?? member.role;
    void put(member.user_id, role, (name) => t.roleChanged(name, roleName(role)));
  };

  const remove = async (member: MemberOut) => {
    if (busy) return;
    setBusy(true);
    setMessage(null);
    const { error, response } = await api.DELETE("/api/v1/cases/{case_id}/members/{user_id}", {
      params: { path: { ...path, user_id: member.user_id } },
    });
    setBusy(false);
    if (!response.ok) {
      setMessage({ kind: "refused", text: t.refused(refusal(error, response)) });
      return;
    }
    if (member.user_id === me?.user_id && !admin) {
      navigate("/cases"); // no longer a member: the case is gone for us
      return;
    }
    setMessage({ kind: "done", text: t.memberRemoved(member.username) });
    await load();
    heading.current?.focus(); // its row, and the button that had the focus, are gone
  };

  const candidates = (users ?? []).filter(
    (user) => !user.disabled && !members?.some((member) => member.user_id === user.id),
  );

  return (
    <div class="members">
      <h2 ref={heading} tabIndex={-1}>
        {t.membersHeading}
      </h2>
      {me && (
        <p class="muted">
          {t.yourUserId} <code>{me.user_id}</code>
        </p>
      )}
      {loadError !== null && (
        <p role="alert" class="error">
          {t.error(loadError)}
        </p>
      )}
      {members === null && loadError === null && <p class="muted">{t.loading}</p>}
      {members !== null && members.length === 0 && <p>{t.noMembers}</p>}
      {members !== null && members.length > 0 && (
        <table class="data members-table">
          <caption class="visually-hidden">{t.membersHeading}</caption>
          <thead>
            <tr>
              <th scope="col">{t.memberName}</th>
              <th scope="col">{t.memberId}</th>
              <th scope="col">{t.memberRole}</th>
              <th scope="col">{t.memberSince}</th>
              {mayShare && <th scope="col">{t.memberActions}</th>}
            </tr>
          </thead>
          <tbody>
            {members.map((member) => {
              const selectId = `member-role-${member.user_id}`;
              const selected = chosen[member.user_id] ?? member.role;
              return (
                <tr key={member.user_id}>
                  <th scope="row">{member.username}</th>
                  <td>
                    <code>{member.user_id}</code>
                  </td>
                  <td>{roleName(member.role)}</td>
                  <td>{formatDate(lang, member.created_at)}</td>
                  {mayShare && (
                    <td>
                      <div class="member-actions">
                        <label for={selectId} class="visually-hidden">
                          {t.roleOf(member.username)}
                        </label>
                        <select
                          id={selectId}
                          value={selected}
                          onChange={(event) => {
                            const value = event.currentTarget.value as Role;
                            setChosen((current) => ({ ...current, [member.user_id]: value }));
                          }}
                        >
                          {ROLES.map((role) => (
                            <option key={role} value={role}>
                              {roleName(role)}
                            </option>
                          ))}
                        </select>
                        <button type="button" onClick={() => change(member)}>
                          {t.changeRole(member.username)}
                        </button>
                        <button type="button" class="danger" onClick={() => void remove(member)}>
                          {t.removeMember(member.username)}
                        </button>
                      </div>
                    </td>
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {message !== null &&
        (message.kind === "refused" ? (
          <p role="alert" class="error">
            {message.text}
          </p>
        ) : (
          <p role="status" class="info">
            {message.text}
          </p>
        ))}
      {members !== null && !mayShare && <p class="muted">{t.mayNotShare}</p>}
      {mayShare && (
        <form class="share-form" onSubmit={share} aria-labelledby="share-heading">
          <h3 id="share-heading">{t.shareHeading}</h3>
          {admin && users !== null ? (
            <>
              <label for="share-user">{t.shareUser}</label>
              <select
                id="share-user"
                required
                value={userId}
                onChange={(event) => setUserId(event.currentTarget.value)}
              >
                <option value="">{t.chooseUser}</option>
                {candidates.map((user) => (
                  <option key={user.id} value={user.id}>
                    {`${user.username} (${user.role})`}
                  </option>
                ))}
              </select>
            </>
          ) : (
            <>
              <label for="share-user">{t.shareUserId}</label>
              <input
                id="share-user"
                required
                maxLength={36}
                aria-describedby="share-user-hint"
                value={userId}
                onInput={(event) => setUserId(event.currentTarget.value)}
              />
              <p id="share-user-hint" class="muted">
                {t.shareUserIdHint}
              </p>
            </>
          )}
          <label for="share-role">{t.shareRole}</label>
          <select
            id="share-role"
            value={newRole}
            onChange={(event) => setNewRole(event.currentTarget.value as Role)}
          >
            {ROLES.map((role) => (
              <option key={role} value={role}>
                {roleName(role)}
              </option>
            ))}
          </select>
          <button type="submit" class="primary">
            {t.share}
          </button>
        </form>
      )}
    </div>
  );
}
