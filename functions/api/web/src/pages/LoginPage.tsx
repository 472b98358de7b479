import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { login, signInOptions, takeOverSignIn, type Schemas } from "../api/client";
import { useTitle } from "../hooks";
import { useI18n } from "../i18n";

export function LoginPage(props: { onSignedIn: () => void; ended: boolean }): JSX.Element {
  const { t } = useI18n();
  useTitle(t.signIn);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(() => {
    const reason = new URLSearchParams(location.search).get("sso_error");
    return reason ? t.signInFailed(reason) : null;
  });
  const [oidc, setOidc] = useState<Schemas["SignInProvider"] | null>(null);
  useEffect(() => {
    void signInOptions()
      .then((options) => setOidc(options.oidc ?? null))
      .catch(() => setOidc(null));
  }, []);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const problem = await login(username, password);
      if (problem === null) {
        setPassword("");
        props.onSignedIn();
        return;
      }
      setError(problem.detail ?? problem.title);
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="login">
      <h1>{t.signIn}</h1>
      {props.ended && <p class="info">{t.sessionEnded}</p>}
      {oidc !== null && (
        <>
          {/* a real navigation: the gateway sends the browser on to the issuer */}
          <a class="button primary" href={`${oidc.login_url}?${new URLSearchParams({ return_to: "/cases" })}`}>
            {t.signInWith(oidc.name)}
          </a>
          <p class="muted">{t.or}</p>
        </>
      )}
      <form onSubmit={submit} class="stack">
        <label for="login-username">{t.username}</label>
        <input
          id="login-username"
          name="username"
          autocomplete="username"
          required
          value={username}
          onInput={(event) => setUsername(event.currentTarget.value)}
        />
        <label for="login-password">{t.password}</label>
        <input
          id="login-password"
          name="password"
          type="password"
          autocomplete="current-password"
          required
          value={password}
          onInput={(event) => setPassword(event.currentTarget.value)}
        />
        <button type="submit" class="primary" disabled={busy}>
          {t.signIn}
        </button>
        {busy && <p class="muted">{t.signingIn}</p>}
      </form>
      {error !== null && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </section>
  );
}

/** Where the gateway's OIDC callback lands: takes over the session it made, then opens `returnTo`. */
export function SignedInPage(props: { returnTo: string; onSignedIn: (to: string) => void }): JSX.Element {
  const { t } = useI18n();
  useTitle(t.signIn);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    void takeOverSignIn()
      .then((problem) => {
        if (problem === null) props.onSignedIn(safePath(props.returnTo));
        else setError(problem.detail ?? problem.title);
      })
      .catch((failure) => setError(failure instanceof Error ? failure.message : String(failure)));
  }, []);
  return (
    <section class="login">
      <h1>{t.signIn}</h1>
      {error === null ? (
        <p class="muted">{t.takingOverSignIn}</p>
      ) : (
        <>
          <p role="alert" class="error">
            {t.signInFailed(error)}
          </p>
          <a href="/login">{t.signIn}</a>
        </>
      )}
    </section>
  );
}

/** A path of this app (never another origin), else the cases. */
function safePath(to: string): string {
  return to.startsWith("/") && !to.startsWith("//") && !to.startsWith("/\\") ? to : "/cases";
}
