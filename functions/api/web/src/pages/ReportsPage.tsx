import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, problemText, type CaseReport, type ReportVersion } from "../api/client";
import { formatDate, useI18n } from "../i18n";
import { Link } from "../router";
import type { Rights } from "../session";

type Format = "pdf" | "json";

export function ReportsPage(props: { caseId: string; version: string | null; rights: Rights }): JSX.Element {
  const { t, lang } = useI18n();
  const [versions, setVersions] = useState<ReportVersion[] | null>(null);
  const [report, setReport] = useState<CaseReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [exporting, setExporting] = useState<Format | null>(null);
  const [exportError, setExportError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    void api
      .GET("/api/v1/cases/{case_id}/reports", { params: { path: { case_id: props.caseId } } })
      .then(({ data, error: failure, response }) => {
        if (!live) return;
        if (data) setVersions(data.reports);
        else setError(problemText(failure, response));
      });
    return () => {
      live = false;
    };
  }, [props.caseId]);

  const latest = versions && versions.length > 0 ? versions[versions.length - 1]! : null;
  const selected = props.version ?? (latest ? String(latest.version) : null);

  useEffect(() => {
    if (selected === null) return;
    let live = true;
    setReport(null);
    void api
      .GET("/api/v1/cases/{case_id}/reports/{version}", {
        params: { path: { case_id: props.caseId, version: selected } },
      })
      .then(({ data, error: failure, response }) => {
        if (!live) return;
        if (data) setReport(data);
        else setError(problemText(failure, response));
      });
    return () => {
      live = false;
    };
  }, [props.caseId, selected]);

  const download = async (format: Format) => {
    if (selected === null) return;
    setExporting(format);
    setExportError(null);
    try {
      const { data, error: failure, response } = await api.GET("/api/v1/cases/{case_id}/reports/{version}/export", {
        params: { path: { case_id: props.caseId, version: selected }, query: { format } },
        parseAs: "blob",
      });
      if (!data) {
        setExportError(problemText(failure, response));
        return;
      }
      save(data, filenameOf(response, `report-v${selected}.${format}`));
    } finally {
      setExporting(null);
    }
  };

  if (error !== null)
    return (
      <p role="alert" class="error">
        {t.error(error)}
      </p>
    );
  if (versions === null) return <p class="muted">{t.loading}</p>;
  if (versions.length === 0) return <p>{t.noReports}</p>;

  return (
    <div class="reports">
      <nav aria-labelledby="versions-heading" class="versions">
        <h2 id="versions-heading">{t.versions}</h2>
        <ul>
          {versions.map((entry) => (
            <li key={entry.version}>
              <Link
                href={`/cases/${props.caseId}/reports?version=${entry.version}`}
                aria-current={String(entry.version) === selected ? "page" : undefined}
              >
                {t.version(entry.version)}
              </Link>
              <span class="muted"> {formatDate(lang, entry.created_at)}</span>
            </li>
          ))}
        </ul>
      </nav>
      <div class="report">
        {report === null ? (
          <p class="muted">{t.loading}</p>
        ) : (
          <>
            <h2>{t.version(report.version)}</h2>
            <p class="muted">{t.reportMeta(formatDate(lang, report.created_at), report.files.length, report.persons?.length ?? 0)}</p>
            {props.rights.export && (
              <div class="actions">
                <button type="button" onClick={() => download("pdf")} disabled={exporting !== null}>
                  {t.exportPdf}
                </button>
                <button type="button" onClick={() => download("json")} disabled={exporting !== null}>
                  {t.exportJson}
                </button>
                {exporting !== null && <span class="muted">{t.exporting}</span>}
              </div>
            )}
            {exportError !== null && (
              <p role="alert" class="error">
                {exportError}
              </p>
            )}
            {report.partial && <p class="warning">{t.partial}</p>}

            <h3>{t.summary}</h3>
            {report.context && (
              <p>
                <strong>{t.context}:</strong> {report.context}
              </p>
            )}
            {report.narrative.statements && report.narrative.statements.length > 0 ? (
              <div class="narrative">
                {report.narrative.statements.map((statement, index) => (
                  <p key={index}>
                    {statement.text} <span class="citations">[{statement.citations.join(", ")}]</span>
                  </p>
                ))}
              </div>
            ) : (
              <p class="muted">{report.narrative.note ?? "—"}</p>
            )}

            <h3>{t.indicators}</h3>
            {report.indicators && report.indicators.length > 0 ? (
              <ul class="indicators">
                {report.indicators.map((indicator) => (
                  <li key={indicator.id}>
                    <strong>
                      {indicator.id}: {indicator.label}
                    </strong>{" "}
                    <span class="tag">{indicator.category}</span>
                    <div class="muted">
                      {indicator.file}
                      {indicator.start_s != null && ` @ ${indicator.start_s.toFixed(1)} s`} ·{" "}
                      {t.confidence(`${Math.round(indicator.confidence * 100)} %`)} ·{" "}
                      {t.model(`${indicator.model.name} ${indicator.model.version}`)} ·{" "}
                      {t.review(t.decisions[indicator.review.decision] ?? indicator.review.decision)}
                      {indicator.review.reason && ` (${indicator.review.reason})`}
                    </div>
                  </li>
                ))}
              </ul>
            ) : (
              <p>{t.noIndicators}</p>
            )}

            <h3>{t.gaps}</h3>
            {report.gaps && report.gaps.length > 0 ? (
              <ul class="gaps">
                {report.gaps.map((gap) => (
                  <li key={gap.id}>
                    <strong>{gap.id}</strong> {gap.text}
                  </li>
                ))}
              </ul>
            ) : (
              <p>{t.noGaps}</p>
            )}
          </>
        )}
      </div>
    </div>
  );
}

/** The file name the server gave in Content-Disposition, else `fallback`. */
function filenameOf(response: Response, fallback: string): string {
  const header = response.headers.get("Content-Disposition") ?? "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(header);
  if (star) {
    try {
      return decodeURIComponent(star[1]!);
    } catch {
      /* fall through */
    }
  }
  const plain = /filename="?([^";]+)"?/i.exec(header);
  return plain ? plain[1]! : fallback;
}

/** Saves a downloaded body through a blob URL and a temporary <a download>. */
function save(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const anchor = document.createElement("a");
  anchor.href = url;
  anchor.download = filename;
  anchor.hidden = true;
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
