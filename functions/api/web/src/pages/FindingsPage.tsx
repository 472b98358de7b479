import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, problemText, type MediaOut, type Schemas } from "../api/client";
import { formatDate, formatSeconds, useI18n } from "../i18n";
import { Link } from "../router";
import type { Rights } from "../session";
import { AuthImage } from "./PersonsImage";

type Finding = Schemas["FindingOut"];
type Review = Schemas["ReviewOut"];
type Evidence = Schemas["EvidenceRef"];
type Frame = Schemas["FramesOut"]["frames"][number];
type Decision = Schemas["ReviewIn"]["decision"];

const DECISIONS: readonly Decision[] = ["confirmed", "rejected", "unclear"];

/** What a finding may carry beyond its schema: the model that made it, when the step names one. */
interface ModelInfo {
  name?: string;
  version?: string;
}

/** The case's findings (docs/reviews.md): indicator, confidence, model, evidence and review state;
 * a decision with a reason for those who may review (case.update: analysts, owners). Sensitive frames
 * are shown blurred until the reviewer opens one original, one at a time (docs/sensitivity.md). */
export function FindingsPage(props: { caseId: string; rights: Rights }): JSX.Element {
  const { t } = useI18n();
  const [findings, setFindings] = useState<Finding[] | null>(null);
  const [reviews, setReviews] = useState<Map<string, Review>>(new Map());
  const [media, setMedia] = useState<Map<string, MediaOut>>(new Map());
  const [frames, setFrames] = useState<Map<string, Frame & { media_id: string }>>(new Map());
  const [opened, setOpened] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const canReview = props.rights.analyse;

  useEffect(() => {
    let live = true;
    const path = { case_id: props.caseId };
    void Promise.all([
      api.GET("/api/v1/cases/{case_id}/findings", { params: { path } }),
      api.GET("/api/v1/cases/{case_id}/reviews", { params: { path } }),
      api.GET("/api/v1/cases/{case_id}/media", { params: { path } }),
    ]).then(async ([found, decided, files]) => {
      if (!live) return;
      if (!found.data) {
        setError(problemText(found.error, found.response));
        return;
      }
      setFindings(found.data.findings);
      if (decided.data) setReviews(new Map(decided.data.reviews.map((review) => [review.indicator_key, review])));
      if (files.data) setMedia(new Map(files.data.map((file) => [file.id, file])));
      // Whether each evidence frame is served blurred: the frames of the files that have any.
      const withFrames = new Set<string>();
      for (const finding of found.data.findings)
        for (const ref of finding.evidence) if (ref.frame_id) withFrames.add(ref.media_id);
      const listed = await Promise.all(
        [...withFrames].map((mediaId) =>
          api.GET("/api/v1/cases/{case_id}/media/{media_id}/frames", {
            params: { path: { case_id: props.caseId, media_id: mediaId } },
          }),
        ),
      );
      if (!live) return;
      const byId = new Map<string, Frame & { media_id: string }>();
      for (const answer of listed)
        if (answer.data) for (const frame of answer.data.frames) byId.set(frame.frame_id, { ...frame, media_id: answer.data.media_id });
      setFrames(byId);
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
  if (findings === null) return <p class="muted">{t.loading}</p>;

  const decided = (review: Review) => setReviews(new Map(reviews).set(review.indicator_key, review));

  return (
    <div class="findings-page">
      <h2>{t.findingsHeading(findings.length)}</h2>
      {findings.length === 0 ? (
        <p>{t.noFindings}</p>
      ) : (
        <ul class="findings-list">
          {findings.map((finding) => (
            <FindingItem
              key={finding.id}
              caseId={props.caseId}
              finding={finding}
              review={reviews.get(finding.indicator_key) ?? null}
              media={media}
              frames={frames}
              opened={opened}
              onOpen={setOpened}
              canReview={canReview}
              onDecided={decided}
            />
          ))}
        </ul>
      )}
    </div>
  );
}

function FindingItem(props: {
  caseId: string;
  finding: Finding;
  review: Review | null;
  media: Map<string, MediaOut>;
  frames: Map<string, Frame & { media_id: string }>;
  opened: string | null;
  onOpen: (frameKey: string | null) => void;
  canReview: boolean;
  onDecided: (review: Review) => void;
}): JSX.Element {
  const { t, lang } = useI18n();
  const { finding, review } = props;
  const headingId = `finding-${finding.id}`;
  const model = (finding as Finding & { model?: ModelInfo | null }).model;
  const state = review?.decision ?? finding.review_state;
  const fileName = (mediaId: string) => props.media.get(mediaId)?.filename ?? mediaId.slice(0, 8);

  return (
    <li class="finding" aria-labelledby={headingId}>
      <h3 id={headingId}>{finding.label}</h3>
      <p class="finding-meta">
        <span class="tag">{finding.kind ?? finding.step}</span> {t.confidence(`${Math.round(finding.confidence * 100)} %`)} ·{" "}
        {model?.name ? t.model(`${model.name}${model.version ? ` ${model.version}` : ""}`) : t.producedBy(finding.step)} ·{" "}
        {t.inFile(fileName(finding.media_id))}
      </p>
      <p class="muted finding-indicator">{t.indicatorKey(finding.indicator_key)}</p>
      <p class={`finding-state state-${state}`}>
        {t.reviewState(t.decisions[state] ?? state)}
        {review && ` — ${review.reason} (${review.reviewer}, ${formatDate(lang, review.decided_at)})`}
      </p>

      <h4>{t.evidence}</h4>
      {finding.evidence.length === 0 ? (
        <p class="muted">{t.noEvidence}</p>
      ) : (
        <ul class="evidence">
          {finding.evidence.map((ref, index) => (
            <EvidenceItem
              key={index}
              caseId={props.caseId}
              evidence={ref}
              fileName={fileName(ref.media_id)}
              frame={ref.frame_id ? props.frames.get(ref.frame_id) ?? null : null}
              frameKey={`${finding.id}:${index}`}
              opened={props.opened}
              onOpen={props.onOpen}
              lang={lang}
            />
          ))}
        </ul>
      )}

      {props.canReview && (
        <DecisionForm caseId={props.caseId} finding={finding} current={review} onDecided={props.onDecided} />
      )}
    </li>
  );
}

function EvidenceItem(props: {
  caseId: string;
  evidence: Evidence;
  fileName: string;
  frame: (Frame & { media_id: string }) | null;
  frameKey: string;
  opened: string | null;
  onOpen: (frameKey: string | null) => void;
  lang: "en" | "de";
}): JSX.Element {
  const { t } = useI18n();
  const ref = props.evidence;
  if (ref.frame_id) {
    const at = props.frame ? formatSeconds(props.lang, props.frame.timestamp_s) : null;
    const name = at ? t.frameName(props.fileName, at) : t.frameName(props.fileName, ref.frame_id.slice(0, 8));
    const isOpen = props.opened === props.frameKey;
    const blurred = props.frame?.blurred ?? false;
    const base = `/api/v1/cases/${encodeURIComponent(props.caseId)}/media/${encodeURIComponent(ref.media_id)}/frames/${encodeURIComponent(ref.frame_id)}`;
    return (
      <li class="evidence-frame">
        <AuthImage
          src={isOpen ? `${base}?original=true` : base}
          alt={isOpen ? t.originalOf(name) : blurred ? t.blurredFrame(name) : name}
          class="finding-frame"
        />
        <div>
          <span>{name}</span>
          {blurred && !isOpen && <p class="muted">{t.blurredNote}</p>}
          {blurred &&
            (isOpen ? (
              <button type="button" onClick={() => props.onOpen(null)}>
                {t.closeOriginal(name)}
              </button>
            ) : (
              <button type="button" onClick={() => props.onOpen(props.frameKey)}>
                {t.openOriginal(name)}
              </button>
            ))}
        </div>
      </li>
    );
  }
  const start = ref.start_s ?? 0;
  const range =
    ref.start_s != null
      ? `${formatSeconds(props.lang, ref.start_s)}${ref.end_s != null ? `–${formatSeconds(props.lang, ref.end_s)}` : ""}`
      : "";
  return (
    <li class="evidence-segment">
      {props.fileName}
      {range && `, ${range}`}{" "}
      <Link href={`/cases/${props.caseId}/media/${ref.media_id}?t=${Math.floor(start)}`}>
        {t.playAt(props.fileName, range || formatSeconds(props.lang, 0))}
      </Link>
    </li>
  );
}

function DecisionForm(props: {
  caseId: string;
  finding: Finding;
  current: Review | null;
  onDecided: (review: Review) => void;
}): JSX.Element {
  const { t } = useI18n();
  const [decision, setDecision] = useState<Decision | null>(props.current?.decision ?? null);
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState("");
  const id = props.finding.id;

  const save = async (event: Event) => {
    event.preventDefault();
    if (decision === null) {
      setError(t.chooseDecision);
      return;
    }
    if (!reason.trim()) {
      setError(t.reasonRequired);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const { data, error: failure, response } = await api.PUT("/api/v1/cases/{case_id}/findings/{finding_id}/review", {
        params: { path: { case_id: props.caseId, finding_id: id } },
        body: { decision, reason: reason.trim() },
      });
      if (!data) {
        setError(problemText(failure, response));
        return;
      }
      props.onDecided(data);
      setReason("");
      setSaved(t.decisionSaved(t.decisions[data.decision] ?? data.decision));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="decision" onSubmit={save} aria-label={t.decisionFor(props.finding.label)}>
      <div role="group" aria-label={t.decision} class="actions">
        {DECISIONS.map((value) => (
          <button key={value} type="button" aria-pressed={decision === value} onClick={() => setDecision(value)}>
            {t.decisionButtons[value]}
          </button>
        ))}
      </div>
      <label for={`reason-${id}`}>{t.reasonLabel}</label>
      <textarea id={`reason-${id}`} rows={2} value={reason} maxLength={2000} onInput={(event) => setReason(event.currentTarget.value)} />
      <div class="actions">
        <button type="submit" disabled={busy}>
          {t.saveDecision}
        </button>
        <span role="status" class="muted">
          {saved}
        </span>
      </div>
      {error !== null && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </form>
  );
}
