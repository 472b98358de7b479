import type { JSX } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, problemText, type MediaOut, type Schemas } from "../api/client";
import { load } from "../api/prefetch";
import { useI18n } from "../i18n";
import type { Rights } from "../session";
import { MediaClock, formatClock } from "./MediaClock";
import { TranscriptList } from "./TranscriptList";

type Segment = Schemas["SpeechSegment"];
type Entry = Schemas["TimelineEntry"];
type Playback = Schemas["PlaybackOut"];

/** One file: its player, the transcript following playback, its timeline and the WebVTT download. */
export function MediaPage(props: { caseId: string; mediaId: string; at: number | null; rights: Rights }): JSX.Element {
  const { t } = useI18n();
  const [media, setMedia] = useState<MediaOut | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [segments, setSegments] = useState<Segment[] | null>(null);
  const [speakerNames, setSpeakerNames] = useState<Record<string, string>>({});
  const [duration, setDuration] = useState(0);
  const [transcriptNote, setTranscriptNote] = useState<string | null>(null);
  const [timeline, setTimeline] = useState<Entry[] | null>(null);
  const [picture, setPicture] = useState<string | null>(null);
  const [clock, setClock] = useState<string | null>(null);
  const [playback, setPlayback] = useState<Playback | null>(null);
  const [playError, setPlayError] = useState<string | null>(null);
  const [unplayable, setUnplayable] = useState(false);
  const resumeAt = useRef<number | null>(null);
  const [now, setNow] = useState(0);
  const [playing, setPlaying] = useState(false);
  const [vttError, setVttError] = useState<string | null>(null);
  const player = useRef<HTMLVideoElement & HTMLAudioElement>(null);
  const list = useRef<HTMLOListElement>(null);
  const seekedOnLoad = useRef(false);
  const path = { case_id: props.caseId, media_id: props.mediaId };

  useEffect(() => {
    let live = true;
    // the first load takes what was prefetched when the app started on this page (api/prefetch.ts)
    void load("media", props.caseId).then(
      ({ data, error: failure, response }) => {
        if (!live) return;
        const found = data?.find((entry) => entry.id === props.mediaId);
        if (found) setMedia(found);
        else setError(data ? t.mediaNotFound : problemText(failure, response));
      },
    );
    void load("transcript", props.caseId, props.mediaId).then(({ data }) => {
      if (!live) return;
      if (!data) {
        setSegments([]);
        setTranscriptNote(t.mediaNoTranscript);
        return;
      }
      const found = data.transcript.segments ?? [];
      setSegments(found);
      setSpeakerNames(data.speaker_names);
      setDuration(Math.max(data.transcript.duration_s ?? 0, ...found.map((segment) => segment.end)));
      if (data.transcript.status !== "completed") setTranscriptNote(data.transcript.reason ?? t.mediaNoTranscript);
    });
    void api
      .GET("/api/v1/cases/{case_id}/reports/{version}", { params: { path: { case_id: props.caseId, version: "latest" } } })
      .then(({ data }) => {
        if (!live) return;
        setTimeline((data?.timeline ?? []).filter((entry) => entry.media_id === props.mediaId));
      });
    return () => {
      live = false;
    };
  }, [props.caseId, props.mediaId]);

  const kind = media ? mediaKind(media) : null;

  // The picture: the preview strip of a video, the still of an image (blob URLs: the routes need the token).
  useEffect(() => {
    if (kind !== "video" && kind !== "image") return;
    let live = true;
    let url: string | null = null;
    void (async () => {
      // a video's poster: its thumbnail (the preview strip is many frames side by side); an image: its preview
      const first = kind === "video" ? "thumbnail" : "preview";
      const second = kind === "video" ? "preview" : "thumbnail";
      let data = await picturePart(path, first);
      if (!data) data = await picturePart(path, second);
      if (!live || !data) return;
      url = URL.createObjectURL(data);
      setPicture(url);
    })();
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [kind, props.caseId, props.mediaId]);

  // The player's source: a short-lived signed URL of the file's own bytes (a media element cannot send
  // the bearer token); a sensitive file gets none until the reviewer opens it (audited).
  const askPlayback = async (original: boolean) => {
    setPlayError(null);
    const { data, error: failure, response } = await api.POST("/api/v1/cases/{case_id}/media/{media_id}/playback", {
      params: { path },
      body: { original },
    });
    if (data) setPlayback(data);
    else setPlayError(problemText(failure, response));
  };

  useEffect(() => {
    if (kind !== "video" && kind !== "audio") return;
    setPlayback(null);
    setUnplayable(false);
    void askPlayback(false);
  }, [kind, props.caseId, props.mediaId]);

  // A format this browser cannot play: a silent clock of the file's length instead (docs/web.md),
  // so the transcript and the timeline still follow a position.
  useEffect(() => {
    if (!unplayable || (kind !== "video" && kind !== "audio") || segments === null) return;
    const length = duration || durationOf(media) || 0;
    if (length <= 0) return;
    const url = URL.createObjectURL(MediaClock(length));
    seekedOnLoad.current = false;
    setClock(url);
    return () => URL.revokeObjectURL(url);
  }, [unplayable, kind, duration, media, segments === null]);

  // The ticket ran out (or the page was left open): ask again and carry on where playback was;
  // anything else the element cannot play falls back to the clock.
  const failed = () => {
    const element = player.current;
    if (!element || unplayable || !playback?.url) return;
    if (playback.expires_at && Date.parse(playback.expires_at) <= Date.now() + 5_000) {
      resumeAt.current = element.currentTime;
      void askPlayback(playback.opened);
      return;
    }
    setUnplayable(true);
  };

  const seek = (seconds: number, play = true) => {
    const element = player.current;
    if (!element) return;
    element.currentTime = seconds;
    setNow(seconds);
    if (play) void element.play().catch(() => undefined);
  };

  // A transcript line's seek keeps its identity, so the memoised lines do not re-render with the clock.
  const seekTo = useRef(seek);
  seekTo.current = seek;
  const seekLine = useCallback((seconds: number) => seekTo.current(seconds), []);

  // `?t=` seeks once the player knows its length.
  const loaded = () => {
    if (resumeAt.current !== null) {
      seek(resumeAt.current, false);
      resumeAt.current = null;
      return;
    }
    if (!seekedOnLoad.current && props.at !== null) {
      seekedOnLoad.current = true;
      seek(props.at, false);
    }
  };

  // (a twentieth of a second early counts: times in links are rounded to hundredths)
  const current = segments?.findIndex((segment) => now + 0.05 >= segment.start && now < segment.end) ?? -1;

  // The transcript follows playback: the current line scrolls into view.
  useEffect(() => {
    if (!playing || current < 0) return;
    const item = list.current?.querySelector<HTMLElement>(`[data-index="${current}"]`);
    item?.scrollIntoView({ block: "nearest" });
  }, [current, playing]);

  const downloadVtt = async () => {
    setVttError(null);
    const { data, error: failure, response } = await api.GET("/api/v1/cases/{case_id}/media/{media_id}/transcript.vtt", {
      params: { path },
      parseAs: "blob",
    });
    if (!data) {
      setVttError(problemText(failure, response));
      return;
    }
    const url = URL.createObjectURL(data);
    const anchor = document.createElement("a");
    anchor.href = url;
    anchor.download = `${(media?.filename ?? props.mediaId).replace(/\.[^.]+$/, "")}.vtt`;
    anchor.hidden = true;
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };

  if (error !== null)
    return (
      <p role="alert" class="error">
        {t.error(error)}
      </p>
    );
  if (media === null) return <p class="muted">{t.loading}</p>;
  const name = media.filename ?? media.id;
  const playerProps = {
    ref: player,
    controls: true,
    preload: "auto" as const,
    src: (unplayable ? clock : playback?.url) ?? undefined,
    "aria-label": t.mediaPlayerOf(name),
    onLoadedMetadata: loaded,
    onError: failed,
    onTimeUpdate: () => setNow(player.current?.currentTime ?? 0),
    onSeeked: () => setNow(player.current?.currentTime ?? 0),
    onPlay: () => setPlaying(true),
    onPause: () => setPlaying(false),
    onEnded: () => setPlaying(false),
  };

  return (
    <div class="media-page">
      <h2>{name}</h2>
      <div class="media-layout">
        <div class="media-stage">
          {kind === "image" && picture && <img class="media-picture" src={picture} alt={t.mediaImageOf(name)} />}
          {kind === "video" && (
            <>
              <video class="media-player" poster={picture ?? undefined} {...playerProps} />
            </>
          )}
          {kind === "audio" && <audio class="media-player" {...playerProps} />}
          {playback?.sensitive && !playback.url && (
            <div class="media-withheld">
              <p class="muted">{t.mediaSensitiveNote}</p>
              <button type="button" onClick={() => void askPlayback(true)}>
                {t.mediaOpenPlayback(name)}
              </button>
            </div>
          )}
          {playback?.opened && <p class="muted">{t.mediaOpenedNote}</p>}
          {playError !== null && (
            <p role="alert" class="error">
              {playError}
            </p>
          )}
          {(kind === "video" || kind === "audio") && (
            <p class="muted media-clock-note">
              {unplayable ? `${t.mediaClockNote} ` : ""}
              {t.mediaPosition(formatClock(now))}
            </p>
          )}
          <div class="actions">
            <button type="button" onClick={downloadVtt} disabled={!segments || segments.length === 0}>
              {t.mediaDownloadVtt}
            </button>
          </div>
          {vttError !== null && (
            <p role="alert" class="error">
              {vttError}
            </p>
          )}
        </div>

        <div class="media-transcript">
          <h3 id="transcript-heading">{t.mediaTranscript}</h3>
          {segments === null && <p class="muted">{t.loading}</p>}
          {transcriptNote !== null && <p class="muted">{transcriptNote}</p>}
          {segments !== null && segments.length > 0 && (
            <TranscriptList segments={segments} current={current} speakerNames={speakerNames} disabled={kind === "image"}
              onSeek={seekLine} listRef={list} />
          )}
        </div>
      </div>

      <h3 id="timeline-heading">{t.mediaTimeline}</h3>
      {timeline === null && <p class="muted">{t.loading}</p>}
      {timeline !== null && timeline.length === 0 && <p>{t.mediaNoTimeline}</p>}
      {timeline !== null && timeline.length > 0 && (
        <ol class="media-timeline" aria-labelledby="timeline-heading">
          {timeline.map((entry) => (
            <li key={entry.id} class={`timeline-entry ${entry.kind}`}>
              {entry.start_s != null && kind !== "image" ? (
                <button type="button" onClick={() => seek(entry.start_s ?? 0)}>
                  {formatClock(entry.start_s)}
                </button>
              ) : (
                <span class="timeline-time">—</span>
              )}{" "}
              <span class="tag">{t.mediaKinds[entry.kind] ?? entry.kind}</span> {entry.speaker ? `${entry.speaker}: ` : ""}
              {entry.text}
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}

async function picturePart(
  path: { case_id: string; media_id: string },
  which: "thumbnail" | "preview",
): Promise<Blob | undefined> {
  const { data } =
    which === "thumbnail"
      ? await api.GET("/api/v1/cases/{case_id}/media/{media_id}/thumbnail", { params: { path }, parseAs: "blob" })
      : await api.GET("/api/v1/cases/{case_id}/media/{media_id}/preview", { params: { path }, parseAs: "blob" });
  return data;
}

function mediaKind(media: MediaOut): "video" | "audio" | "image" | "other" {
  const value = (media.kind ?? media.content_type ?? "").toLowerCase();
  if (value.startsWith("video")) return "video";
  if (value.startsWith("audio")) return "audio";
  if (value.startsWith("image")) return "image";
  return "other";
}

function durationOf(media: MediaOut | null): number {
  const metadata = media?.metadata ?? {};
  for (const key of ["duration_s", "duration"]) {
    const value = Number(metadata[key]);
    if (Number.isFinite(value) && value > 0) return value;
  }
  return 0;
}
