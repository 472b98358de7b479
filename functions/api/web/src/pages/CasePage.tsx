import type { JSX } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { problemText, type CaseOut } from "../api/client";
import { load, prefetchPage } from "../api/prefetch";
import { useTitle } from "../hooks";
import { useI18n } from "../i18n";
import { Link, type Route } from "../router";
import { useRights } from "../session";
import { FilesPage } from "./FilesPage";
import { JobsPage } from "./JobsPage";
import { ReportsPage } from "./ReportsPage";
import { FindingsPage } from "./FindingsPage";
import { MediaPage } from "./MediaPage";
import { MembersPage } from "./MembersPage";
import { PersonsPage } from "./PersonsPage";
import { SearchPage } from "./SearchPage";

type CaseRoute = Extract<Route, { caseId: string }>;

/** A case: its name as the heading, the case's navigation, and the chosen page. */
export function CasePage({ route }: { route: CaseRoute }): JSX.Element {
  const { t } = useI18n();
  const [item, setItem] = useState<CaseOut | null>(null);
  const [error, setError] = useState<string | null>(null);
  // the case, its members and the tab's own data at once, before the effects below take them
  useMemo(() => prefetchPage(location.pathname, location.search), [route.caseId]);
  const rights = useRights(route.caseId);
  const sections: Record<CaseRoute["name"], string> = {
    files: t.files,
    jobs: t.jobs,
    reports: t.reports,
    persons: t.persons,
    findings: t.findings,
    members: t.members,
    search: t.search,
    media: t.files,
  };
  const section = sections[route.name];
  useTitle(item ? `${item.name} – ${section}` : null);

  useEffect(() => {
    let live = true;
    setItem(null);
    setError(null);
    void load("case", route.caseId).then(({ data, error: failure, response }) => {
        if (!live) return;
        if (data) setItem(data);
        else setError(problemText(failure, response));
      });
    return () => {
      live = false;
    };
  }, [route.caseId]);

  if (error !== null) {
    return (
      <section>
        <h1>{t.notFound}</h1>
        <p role="alert" class="error">
          {error}
        </p>
        <p>
          <Link href="/cases">{t.backToCases}</Link>
        </p>
      </section>
    );
  }
  if (item === null) return <p class="muted">{t.loading}</p>;

  const base = `/cases/${item.id}`;
  const tabs: { name: CaseRoute["name"]; href: string; label: string }[] = [
    { name: "files", href: base, label: t.files },
    { name: "jobs", href: `${base}/jobs`, label: t.jobs },
    { name: "reports", href: `${base}/reports`, label: t.reports },
    { name: "persons", href: `${base}/persons`, label: t.persons },
    { name: "findings", href: `${base}/findings`, label: t.findings },
    { name: "search", href: `${base}/search`, label: t.search },
    { name: "members", href: `${base}/members`, label: t.members },
  ];

  return (
    <section>
      <h1>{item.name}</h1>
      {item.context && <p class="case-context">{item.context}</p>}
      <nav aria-label={t.caseNav} class="case-nav">
        <ul>
          {tabs.map((tab) => (
            <li key={tab.name}>
              <Link href={tab.href} aria-current={route.name === tab.name ? "page" : undefined}>
                {tab.label}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      {rights === null ? (
        <p class="muted">{t.loading}</p>
      ) : route.name === "files" ? (
        <FilesPage key={item.id} caseId={item.id} rights={rights} />
      ) : route.name === "jobs" ? (
        <JobsPage key={item.id} caseId={item.id} rights={rights} />
      ) : route.name === "persons" ? (
        <PersonsPage key={item.id} caseId={item.id} rights={rights} />
      ) : route.name === "findings" ? (
        <FindingsPage key={item.id} caseId={item.id} rights={rights} />
      ) : route.name === "members" ? (
        <MembersPage key={item.id} caseId={item.id} />
      ) : route.name === "search" ? (
        <SearchPage key={item.id} caseId={item.id} query={route.query} />
      ) : route.name === "media" ? (
        <MediaPage key={route.mediaId} caseId={item.id} mediaId={route.mediaId} at={route.at} rights={rights} />
      ) : (
        <ReportsPage key={item.id} caseId={item.id} version={route.version} rights={rights} />
      )}
    </section>
  );
}
