import type { JSX } from "preact";
import { useState } from "preact/hooks";
import { login } from "../api/client";
import { useTitle } from "../hooks";
import { useI18n } from "../i18n";

export function LoginPage(props: { onSignedIn: () => void; ended: boolean }): JSX.Element {
  const { t } = useI18n();
  useTitle(t.signIn);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

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
