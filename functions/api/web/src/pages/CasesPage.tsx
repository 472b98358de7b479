import type { JSX } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, problemText, type CaseOut } from "../api/client";
import { useTitle } from "../hooks";
import { formatDate, useI18n } from "../i18n";
import { Link, navigate } from "../router";
import { caseRole, rights, useMe, type CaseRole } from "../session";

interface Row {
  item: CaseOut;
  role: CaseRole;
}

export function CasesPage(): JSX.Element {
  const { t, lang } = useI18n();
  const me = useMe();
  useTitle(t.cases);
  const [rows, setRows] = useState<Row[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [creating, setCreating] = useState(false);
  const [createError, setCreateError] = useState<string | null>(null);
  const [deleting, setDeleting] = useState<CaseOut | null>(null);
  const opener = useRef<HTMLElement | null>(null);

  const load = useCallback(async () => {
    const { data, error: failure, response } = await api.GET("/api/v1/cases");
    if (!data) {
      setError(problemText(failure, response));
      return;
    }
    setError(null);
    // A case's role comes from its members; an admin may do everything anyway.
    const roles = await Promise.all(
      data.map((item) =>
        me === null || me.role === "admin" ? Promise.resolve<CaseRole>(null) : caseRole(me, item.id).catch(() => null),
      ),
    );
    setRows(data.map((item, index) => ({ item, role: roles[index] ?? null })));
  }, [me]);

  useEffect(() => {
    void load();
  }, [load]);

  const create = async (event: Event) => {
    event.preventDefault();
    const trimmed = name.trim();
    if (!trimmed) return;
    setCreating(true);
    setCreateError(null);
    const { data, error: failure, response } = await api.POST("/api/v1/cases", { body: { name: trimmed } });
    setCreating(false);
    if (!data) {
      setCreateError(problemText(failure, response));
      return;
    }
    setName("");
    navigate(`/cases/${data.id}`);
  };

  const mayCreate = me !== null && me.role !== "guest";

  return (
    <section>
      <h1>{t.cases}</h1>
      {mayCreate && (
        <form class="inline-form" onSubmit={create} aria-labelledby="new-case-heading">
          <h2 id="new-case-heading" class="visually-hidden">
            {t.newCase}
          </h2>
          <label for="case-name">{t.caseName}</label>
          <input
            id="case-name"
            name="name"
            maxLength={200}
            required
            value={name}
            onInput={(event) => setName(event.currentTarget.value)}
          />
          <button type="submit" class="primary" disabled={creating}>
            {t.createCase}
          </button>
          {createError !== null && (
            <p role="alert" class="error">
              {createError}
            </p>
          )}
        </form>
      )}
      <h2>{t.yourCases}</h2>
      {error !== null && (
        <p role="alert" class="error">
          {t.error(error)}
        </p>
      )}
      {rows === null && error === null && <p class="muted">{t.loading}</p>}
      {rows !== null && rows.length === 0 && <p>{t.noCases}</p>}
      {rows !== null && rows.length > 0 && (
        <ul class="case-list">
          {rows.map(({ item, role }) => {
            const allowed = rights(me, role);
            return (
              <li key={item.id}>
                <Link href={`/cases/${item.id}`} class="case-link">
                  {item.name}
                </Link>
                <span class="muted">
                  {t.created(formatDate(lang, item.created_at))}
                  {role !== null && ` · ${t.caseRole(role)}`}
                </span>
                {allowed.delete && (
                  <button
                    type="button"
                    class="danger"
                    onClick={(event) => {
                      opener.current = event.currentTarget;
                      setDeleting(item);
                    }}
                  >
                    {t.deleteCase(item.name)}
                  </button>
                )}
              </li>
            );
          })}
        </ul>
      )}
      {deleting !== null && (
        <DeleteDialog
          item={deleting}
          onClose={(deleted) => {
            setDeleting(null);
            if (deleted) setRows((current) => current?.filter((row) => row.item.id !== deleting.id) ?? null);
            // Once the modal dialog is gone: back to the button that opened it, or to the heading.
            setTimeout(() => {
              const heading = document.querySelector<HTMLElement>("main h1");
              if (heading) heading.tabIndex = -1;
              (deleted || !opener.current?.isConnected ? heading : opener.current)?.focus();
            }, 0);
          }}
        />
      )}
    </section>
  );
}

/** The confirmation before a case is deleted: a modal dialog that keeps the focus and closes on Escape. */
function DeleteDialog(props: { item: CaseOut; onClose: (deleted: boolean) => void }): JSX.Element {
  const { t } = useI18n();
  const dialog = useRef<HTMLDialogElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const done = useRef(false);
  const close = (deleted: boolean) => {
    if (done.current) return;
    done.current = true;
    props.onClose(deleted);
  };

  useEffect(() => {
    const element = dialog.current;
    if (element && !element.open) element.showModal();
    cancel.current?.focus();
    return () => element?.close();
  }, []);

  const remove = async () => {
    setBusy(true);
    setError(null);
    const { error: failure, response } = await api.DELETE("/api/v1/cases/{case_id}", {
      params: { path: { case_id: props.item.id } },
    });
    setBusy(false);
    if (response.ok) {
      close(true);
      return;
    }
    setError(problemText(failure, response));
  };

  // Escape closes it; Tab and Shift+Tab stay within it.
  const keydown = (event: KeyboardEvent) => {
    if (event.key === "Escape") {
      event.preventDefault();
      if (!busy) close(false);
      return;
    }
    if (event.key !== "Tab" || !dialog.current) return;
    const focusable = Array.from(
      dialog.current.querySelectorAll<HTMLElement>("button:not([disabled]), [href], input, select, textarea"),
    );
    if (focusable.length === 0) return;
    const first = focusable[0]!;
    const last = focusable[focusable.length - 1]!;
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  };

  return (
    <dialog
      ref={dialog}
      class="confirm"
      aria-labelledby="delete-title"
      aria-describedby="delete-text"
      onKeyDown={keydown}
      onCancel={(event) => {
        event.preventDefault(); // the browser's own Escape handling: the same path as Cancel
        if (!busy) close(false);
      }}
      onClose={() => close(false)}
    >
      <h2 id="delete-title">{t.deleteCaseTitle(props.item.name)}</h2>
      <p id="delete-text">{t.deleteCaseText}</p>
      {error !== null && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <div class="dialog-actions">
        <button type="button" class="danger" onClick={remove} disabled={busy}>
          {t.deletePermanently}
        </button>
        <button type="button" ref={cancel} onClick={() => close(false)} disabled={busy}>
          {t.cancel}
        </button>
      </div>
      {busy && <p class="muted">{t.deleting}</p>}
    </dialog>
  );
}
