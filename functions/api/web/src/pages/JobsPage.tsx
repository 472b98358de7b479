import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { api, problemText, type JobView, type Schemas } from "../api/client";
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
/** The steps per file are asked for again at most this often while the job changes (the last change
 * is always fetched). */
const FILES_THROTTLE_MS = 1000;

type JobFiles = Schemas["JobFiles"];

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
      {jobs.map((job, index) => {
        const stream = !isFinal(job.phase) && streams++ < MAX_STREAMS;
        // the newest job shows its steps per file at once; the others on request
        return (
          <JobCard key={job.id} caseId={props.caseId} initial={job} stream={stream} rights={props.rights} open={index === 0} />
        );
      })}
    </div>
  );
}

function JobCard(props: {
  caseId: string;
  initial: JobView;
  stream: boolean;
  rights: Rights;
  open: boolean;
}): JSX.Element {
  const { t, lang } = useI18n();
  const [job, setJob] = useState<JobView>(props.initial);
  const [mode, setMode] = useState<Mode | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  const [open, setOpen] = useState(props.open);
  const fileSteps = useJobFiles(props.caseId, job, open);
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
      <p>
        <button type="button" aria-expanded={open} aria-controls={`file-steps-${job.id}`} onClick={() => setOpen(!open)}>
          {t.fileSteps}
        </button>
      </p>
      <div id={`file-steps-${job.id}`} class="file-steps-box" hidden={!open}>
        {open && <FileSteps job={job} short={short} {...fileSteps} />}
      </div>
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

/** The job's files with each step's state, fetched while `open` and again (throttled) whenever the
 * job's view changes, i.e. on each event of its stream or poll. */
function useJobFiles(caseId: string, job: JobView, open: boolean): { files: JobFiles | null; error: string | null } {
  const [files, setFiles] = useState<JobFiles | null>(null);
  const [error, setError] = useState<string | null>(null);
  const last = useRef(0);
  const sent = useRef(0);
  const shown = useRef(0);
  const mounted = useRef(true);
  useEffect(
    () => () => {
      mounted.current = false;
    },
    [],
  );
  // the view changes when any file's step does (its counts per step and state)
  const change = JSON.stringify([job.phase, job.counts, job.progress]);
  useEffect(() => {
    if (!open) return;
    const wait = Math.max(0, last.current + FILES_THROTTLE_MS - Date.now());
    const timer = setTimeout(() => {
      last.current = Date.now();
      const number = ++sent.current;
      void api
        .GET("/api/v1/cases/{case_id}/jobs/{job_id}/files", { params: { path: { case_id: caseId, job_id: job.id } } })
        .then(({ data, error: failure, response }) => {
          if (!mounted.current || number < shown.current) return; // an older answer arriving late
          shown.current = number;
          if (data) {
            setFiles(data);
            setError(null);
          } else setError(problemText(failure, response));
        })
        .catch(() => undefined);
    }, wait);
    return () => clearTimeout(timer);
  }, [open, change, caseId, job.id]);
  return { files, error };
}

function FileSteps(props: { job: JobView; short: string; files: JobFiles | null; error: string | null }): JSX.Element {
  const { t } = useI18n();
  if (props.error !== null)
    return (
      <p role="alert" class="error">
        {t.error(props.error)}
      </p>
    );
  if (props.files === null) return <p class="muted">{t.loading}</p>;
  const steps = (props.files.steps.length > 0 ? [...props.files.steps] : [...props.job.steps]).sort(
    (a, b) => order(a) - order(b),
  );
  return (
    <table class="data file-steps">
      <caption>{t.fileStepsTable(t.job(props.short))}</caption>
      <thead>
        <tr>
          <th scope="col">{t.file}</th>
          {steps.map((step) => (
            <th scope="col" key={step}>
              {step}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {props.files.files.map((file) => (
          <tr key={file.child_job_id}>
            <th scope="row">{file.filename ?? file.media_id}</th>
            {steps.map((step) => {
              const entry = file.steps.find((candidate) => candidate.step === step);
              // a step the file has no row for: still to be planned (queued), or none for this file
              // (e.g. faces for a sound file) once its steps are planned or the job has ended
              const absent = file.steps.length > 0 || isFinal(props.job.phase) ? "none" : "pending";
              const state = entry?.state ?? absent;
              const label =
                state === "none" ? t.stepAbsent : state === "pending" ? t.stepQueued : (t.states[state] ?? state);
              return (
                <td key={step} class={`state-${state}`} data-state={state}>
                  {t.stepState(label, entry?.reason ?? null)}
                </td>
              );
            })}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
