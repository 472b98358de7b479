import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, problemText, type JobView } from "../api/client";
import { followJob, isFinal, type Mode } from "../api/events";
import { formatDate, formatSeconds, phaseText, useI18n } from "../i18n";
import { Link } from "../router";
import type { Rights } from "../session";

/** Streams open at once (a browser allows few connections per host); later jobs are polled. */
const MAX_STREAMS = 3;
const STEP_ORDER = ["probe", "transcribe", "speakers", "cues", "phrases", "faces", "persons", "pose", "vision", "ocr", "sensitivity", "fuse", "report"];
const order = (step: string) => {
  const index = STEP_ORDER.indexOf(step);
  return index === -1 ? STEP_ORDER.length : index;
};
const STATES = ["pending", "running", "succeeded", "failed", "not_run", "cancelled"] as const;

export function JobsPage(props: { caseId: string; rights: Rights }): JSX.Element {
  const { t } = useI18n();
  const [jobs, setJobs] = useState<JobView[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    void api
      .GET("/api/v1/cases/{case_id}/jobs", { params: { path: { case_id: props.caseId } } })
      .then(({ data, error: failure, response }) => {
        if (!live) return;
        if (data) setJobs(data.items);
        else setError(problemText(failure, response));
      });
    return () => {
      live = false;
    };
  }, [props.caseId]);

  if (error !== null)
    return (
      <p role="alert" class="error">
        {t.error(error)}
      </p>
    );
  if (jobs === null) return <p class="muted">{t.loading}</p>;
  if (jobs.length === 0) return <p>{t.noJobs}</p>;

  let streams = 0;
  return (
    <div class="jobs">
      {jobs.map((job) => {
        const stream = !isFinal(job.phase) && streams++ < MAX_STREAMS;
        return <JobCard key={job.id} caseId={props.caseId} initial={job} stream={stream} rights={props.rights} />;
      })}
    </div>
  );
}

function JobCard(props: { caseId: string; initial: JobView; stream: boolean; rights: Rights }): JSX.Element {
  const { t, lang } = useI18n();
  const [job, setJob] = useState<JobView>(props.initial);
  const [mode, setMode] = useState<Mode | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  const short = job.id.slice(0, 8);
  const final = isFinal(job.phase);

  // Follow the job while it has not ended (again after a resume).
  useEffect(() => {
    if (isFinal(job.phase)) return;
    const controller = new AbortController();
    void followJob(props.caseId, job.id, setJob, setMode, controller.signal, { stream: props.stream }).finally(
      () => !controller.signal.aborted && setMode(null),
    );
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.caseId, job.id, generation]);

  const act = async (verb: "approve" | "cancel" | "resume") => {
    setBusy(true);
    setError(null);
    const options = { params: { path: { case_id: props.caseId, job_id: job.id } } };
    const { data, error: failure, response } =
      verb === "approve"
        ? await api.POST("/api/v1/cases/{case_id}/jobs/{job_id}/approve", options)
        : verb === "cancel"
          ? await api.POST("/api/v1/cases/{case_id}/jobs/{job_id}/cancel", options)
          : await api.POST("/api/v1/cases/{case_id}/jobs/{job_id}/resume", options);
    setBusy(false);
    if (!data) {
      setError(problemText(failure, response));
      return;
    }
    setJob(data);
    if (verb === "resume") setGeneration((value) => value + 1);
  };

  // The steps as the ledger counts them (the functions' names, e.g. `cues`), else as the job asked.
  const counted = Object.keys(job.counts);
  const steps = counted.length > 0 ? counted.sort((a, b) => order(a) - order(b)) : [...job.steps];
  const columns = STATES.filter((state) => steps.some((step) => (job.counts[step]?.[state] ?? 0) > 0));
  const shown = columns.length > 0 ? columns : (["pending"] as const satisfies readonly (typeof STATES)[number][]);
  const estimate = job.estimate as null | {
    model_s?: number;
    wall_s?: number;
    cost?: number;
    currency?: string;
    basis?: string;
    gpu_profile?: string;
  };
  const canApprove = job.phase === "AwaitingApproval";
  const canCancel = !final;
  const canResume = job.phase === "Cancelled" || job.phase === "Failed";
  const percent = Math.round(job.progress * 100);

  return (
    <article class="job" aria-label={t.job(short)}>
      <header class="job-header">
        <h2>{t.job(short)}</h2>
        <p class="phase-line">
          <span class="visually-hidden">{t.phase}: </span>
          <span role="status" lang="en" class={`phase phase-${job.phase}`}>
            {job.phase}
          </span>
          {lang !== "en" && <span class="muted"> ({phaseText(t, job.phase)})</span>}
        </p>
      </header>
      <dl class="facts">
        <div>
          <dt>{t.progress}</dt>
          <dd>
            <progress max={100} value={percent} aria-label={`${t.progress} ${t.job(short)}`} /> {percent} %
          </dd>
        </div>
        <div>
          <dt>{t.priority}</dt>
          <dd>{job.priority}</dd>
        </div>
        <div>
          <dt>{t.createdAt}</dt>
          <dd>{formatDate(lang, job.created_at)}</dd>
        </div>
        {estimate && (
          <div>
            <dt>{t.estimate}</dt>
            <dd>
              {t.estimateText(
                formatSeconds(lang, estimate.model_s ?? 0),
                formatSeconds(lang, estimate.wall_s ?? 0),
                `${(estimate.cost ?? 0).toLocaleString(lang, { maximumFractionDigits: 2 })} ${estimate.currency ?? ""}`.trim(),
              )}
              {estimate.basis && <span class="muted"> ({t.estimateBasis(estimate.basis, estimate.gpu_profile ?? "")})</span>}
            </dd>
          </div>
        )}
      </dl>
      {!final && job.eta_s !== null && job.eta_s > 0 && <p class="muted">{t.eta(formatSeconds(lang, job.eta_s))}</p>}
      {job.reason && <p>{t.reason(job.reason)}</p>}
      <table class="data steps">
        <caption>{t.stepsTable(job.files)}</caption>
        <thead>
          <tr>
            <th scope="col">{t.step}</th>
            {shown.map((state) => (
              <th scope="col" key={state} class="num">
                {t.states[state] ?? state}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {steps.map((step) => (
            <tr key={step}>
              <th scope="row">{step}</th>
              {shown.map((state) => (
                <td key={state} class={`num state-${state}`}>
                  {job.counts[step]?.[state] ?? 0}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      {props.rights.analyse && (canApprove || canCancel || canResume) && (
        <div class="actions">
          {canApprove && (
            <button type="button" class="primary" disabled={busy} onClick={() => act("approve")}>
              {t.approve}
            </button>
          )}
          {canCancel && (
            <button type="button" disabled={busy} onClick={() => act("cancel")}>
              {t.cancelJob}
            </button>
          )}
          {canResume && (
            <button type="button" disabled={busy} onClick={() => act("resume")}>
              {t.resumeJob}
            </button>
          )}
        </div>
      )}
      {error !== null && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {job.report && (
        <p>
          <Link href={`/cases/${props.caseId}/reports?version=${job.report.version}`}>
            {t.openReport(job.report.version)}
          </Link>
        </p>
      )}
      {mode !== null && <p class="muted live">{mode === "stream" ? t.liveUpdates : t.polling}</p>}
    </article>
  );
}
