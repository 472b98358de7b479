// The shell: header (cases link, language, sign out), the note on findings, and the pages.
import type { JSX } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, hasSession, logout, onSignedOut, type Me } from "./api/client";
import { applyLang, DICTIONARIES, I18nContext, initialLang, LANGS, useI18n, type I18n, type Lang } from "./i18n";
import { CasePage } from "./pages/CasePage";
import { CasesPage } from "./pages/CasesPage";
import { LoginPage, SignedInPage } from "./pages/LoginPage";
import { Link, navigate, parse, useLocation, type Route } from "./router";
import { MeContext } from "./session";

type Status = "checking" | "in" | "out";

export function App(): JSX.Element {
  const [lang, setLangState] = useState<Lang>(initialLang);
  // kept at once, not in the effect after the render: a reload right after the choice keeps it too
  const setLang = useCallback((next: Lang) => {
    applyLang(next);
    setLangState(next);
  }, []);
  useEffect(() => applyLang(lang), [lang]);
  const i18n = useMemo<I18n>(() => ({ lang, t: DICTIONARIES[lang], setLang }), [lang, setLang]);

  const { pathname, search } = useLocation();
  const route = parse(pathname, search);
  const [status, setStatus] = useState<Status>(hasSession() ? "checking" : "out");
  const [me, setMe] = useState<Me | null>(null);
  const [ended, setEnded] = useState(false);

  const loadMe = useCallback(async () => {
    const { data } = await api.GET("/api/v1/me");
    if (data) {
      setMe(data);
      setStatus("in");
    } else {
      setMe(null);
      setStatus("out");
    }
  }, []);

  useEffect(() => {
    if (status === "checking") void loadMe();
  }, [status, loadMe]);

  useEffect(
    () =>
      onSignedOut(() => {
        setMe(null);
        setStatus("out");
        setEnded(true);
      }),
    [],
  );

  // Unauthenticated visits go to /login; a signed-in visit to /login goes to /cases.
  useEffect(() => {
    if (status === "out" && route.name !== "login" && route.name !== "signedIn") navigate("/login", { replace: true });
    if (status === "in" && route.name === "login") navigate("/cases", { replace: true });
  }, [status, route.name]);

  const signOut = async () => {
    await logout();
    setMe(null);
    setEnded(false);
    setStatus("out");
  };

  const signedIn = async () => {
    setEnded(false);
    await loadMe();
    navigate("/cases");
  };

  const signedInElsewhere = async (to: string) => {
    setEnded(false);
    await loadMe();
    navigate(to, { replace: true });
  };

  let page: JSX.Element | null = null;
  if (route.name === "signedIn") {
    page = <SignedInPage returnTo={route.returnTo} onSignedIn={(to) => void signedInElsewhere(to)} />;
  } else if (route.name === "login") {
    page = status === "out" ? <LoginPage onSignedIn={signedIn} ended={ended} /> : null;
  } else if (status === "in") {
    page = <Page route={route} />;
  }

  return (
    <I18nContext.Provider value={i18n}>
      <MeContext.Provider value={me}>
        <Shell me={status === "in" ? me : null} onSignOut={signOut} routeKey={pathname + search}>
          {page ?? <p class="muted">{i18n.t.loading}</p>}
        </Shell>
      </MeContext.Provider>
    </I18nContext.Provider>
  );
}

function Page({ route }: { route: Route }): JSX.Element {
  const { t } = useI18n();
  switch (route.name) {
    case "cases":
      return <CasesPage />;
    case "files":
    case "jobs":
    case "reports":
    case "persons":
    case "findings":
    case "members":
    case "search":
    case "media":
      return <CasePage route={route} />;
    default:
      return (
        <section>
          <h1>{t.notFound}</h1>
          <p>
            <Link href="/cases">{t.backToCases}</Link>
          </p>
        </section>
      );
  }
}

function Shell(props: {
  me: Me | null;
  onSignOut: () => void;
  routeKey: string;
  children: JSX.Element;
}): JSX.Element {
  const { t, lang, setLang } = useI18n();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);

  // After a navigation, move focus to the new page's heading (for keyboard and screen readers).
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const timer = setTimeout(() => {
      const heading = main.current?.querySelector<HTMLElement>("h1");
      if (heading && !main.current?.contains(document.activeElement)) {
        heading.tabIndex = -1;
        heading.focus({ preventScroll: false });
      }
    }, 0);
    return () => clearTimeout(timer);
  }, [props.routeKey]);

  return (
    <>
      <a class="skip-link" href="#main">
        {t.skipToContent}
      </a>
      <header class="app-header">
        <div class="app-bar">
          <span class="brand">AIMA</span>
          {props.me && (
            <nav aria-label={t.mainNav} class="main-nav">
              <Link href="/cases">{t.cases}</Link>
            </nav>
          )}
          <div class="header-tools">
            <label for="language-select">{t.language}</label>
            <select
              id="language-select"
              value={lang}
              onChange={(event) => setLang((event.currentTarget.value as Lang) === "de" ? "de" : "en")}
            >
              {LANGS.map((option) => (
                <option key={option.value} value={option.value} lang={option.value}>
                  {option.label}
                </option>
              ))}
            </select>
            {props.me && (
              <>
                <span class="who">{t.signedInAs(props.me.username, props.me.role)}</span>
                <button type="button" onClick={props.onSignOut}>
                  {t.signOut}
                </button>
              </>
            )}
          </div>
        </div>
        <p role="note" class="review-note">
          {t.note}
        </p>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {props.children}
      </main>
    </>
  );
}
