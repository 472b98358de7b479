import type { JSX } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import * as tus from "tus-js-client";
import { api, freshToken, problemText, refused, type MediaOut } from "../api/client";
import { load } from "../api/prefetch";
import { formatBytes, useI18n } from "../i18n";
import { Link, navigate } from "../router";
import type { Rights } from "../session";

/** Bytes per PATCH, as `aima upload` sends them. */
const CHUNK = 8 * 1024 * 1024;
/** Files uploaded at the same time (the others wait their turn). */
const PARALLEL = 3;

type UploadState = "waiting" | "uploading" | "uploaded" | "duplicate" | "refused";

interface Item {
  key: number;
  file: File;
  progress: number;
  state: UploadState;
  mediaId?: string;
  duplicateOf?: string;
  detail?: string;
}

let nextKey = 1;

export function FilesPage(props: { caseId: string; rights: Rights }): JSX.Element {
  const { t, lang } = useI18n();
  const [media, setMedia] = useState<MediaOut[] | null>(null);
  const [mediaError, setMediaError] = useState<string | null>(null);
  const [items, setItems] = useState<Item[]>([]);
  const [dragging, setDragging] = useState(false);
  const [submitting, setSubmitting] = useState(false);
  const [submitError, setSubmitError] = useState<string | null>(null);
  const running = useRef(new Map<number, tus.Upload>());
  const queue = useRef<Item[]>([]);

  const loadMedia = useCallback(async () => {
    // the first load takes the answer prefetched when the app started here (api/prefetch.ts)
    const { data, error, response } = await load("media", props.caseId);
    if (data) {
      setMedia(data);
      setMediaError(null);
    } else setMediaError(problemText(error, response));
  }, [props.caseId]);

  useEffect(() => {
    void loadMedia();
  }, [loadMedia]);

  // Leaving the page stops the uploads; they resume from where they were when the files are chosen again.
  useEffect(() => {
    const uploads = running.current;
    return () => {
      uploads.forEach((upload) => void upload.abort(false));
      uploads.clear();
      queue.current = [];
    };
  }, []);

  const change = useCallback((key: number, patch: Partial<Item>) => {
    setItems((current) => current.map((item) => (item.key === key ? { ...item, ...patch } : item)));
  }, []);

  const startNext = useCallback(() => {
    while (running.current.size < PARALLEL && queue.current.length > 0) {
      const item = queue.current.shift()!;
      start(item);
    }
  }, []);

  const finished = useCallback(
    (key: number) => {
      running.current.delete(key);
      startNext();
      if (running.current.size === 0 && queue.current.length === 0) void loadMedia();
    },
    [startNext, loadMedia],
  );

  function start(item: Item): void {
    const endpoint = `${location.origin}/api/v1/cases/${encodeURIComponent(props.caseId)}/uploads`;
    const upload = new tus.Upload(item.file, {
      endpoint,
      chunkSize: CHUNK,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      // `analysis: job`: the upload only stores the file; the batch's job analyses it.
      metadata: { filename: item.file.name, analysis: "job" },
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      async onBeforeRequest(request) {
        const token = await freshToken();
        if (token !== null) request.setHeader("Authorization", `Bearer ${token}`);
      },
      onShouldRetry(error, _attempt, _options) {
        const status = error.originalResponse?.getStatus() ?? 0;
        if (status === 401) {
          const sent = error.originalRequest?.getHeader("Authorization")?.replace(/^Bearer /, "") ?? null;
          refused(sent); // the next attempt refreshes the access token first
          return true;
        }
        return status === 0 || status === 409 || status === 423 || status >= 500;
      },
      onProgress(sent, total) {
        change(item.key, { progress: total > 0 ? Math.floor((sent / total) * 100) : 0 });
      },
      onSuccess({ lastResponse }) {
        const mediaId = lastResponse.getHeader("X-AIMA-Media-Id") ?? undefined;
        const duplicateOf = lastResponse.getHeader("X-AIMA-Duplicate-Of") ?? undefined;
        change(item.key, {
          progress: 100,
          state: duplicateOf ? "duplicate" : "uploaded",
          mediaId,
          duplicateOf,
        });
        finished(item.key);
      },
      onError(error) {
        change(item.key, { state: "refused", detail: refusal(error) });
        finished(item.key);
      },
    });
    running.current.set(item.key, upload);
    change(item.key, { state: "uploading" });
    void upload.findPreviousUploads().then((previous) => {
      if (previous.length > 0) upload.resumeFromPreviousUpload(previous[0]!);
      upload.start();
    });
  }

  const add = (files: FileList | File[] | null) => {
    if (!files || files.length === 0 || !props.rights.upload) return;
    const added: Item[] = Array.from(files).map((file) => ({ key: nextKey++, file, progress: 0, state: "waiting" }));
    setSubmitError(null);
    setItems((current) => [...current, ...added]);
    queue.current.push(...added);
    startNext();
  };

  const busy = items.some((item) => item.state === "waiting" || item.state === "uploading");
  const stored = Array.from(
    new Set(items.filter((item) => item.state === "uploaded" && item.mediaId).map((item) => item.mediaId!)),
  );

  const analyse = async () => {
    setSubmitting(true);
    setSubmitError(null);
    const { data, error, response } = await api.POST("/api/v1/cases/{case_id}/jobs", {
      params: { path: { case_id: props.caseId } },
      body: { media_ids: stored, approved: false, priority: "normal" },
    });
    setSubmitting(false);
    if (!data) {
      setSubmitError(problemText(error, response));
      return;
    }
    navigate(`/cases/${props.caseId}/jobs`);
  };

  const nameOf = (mediaId: string) => media?.find((entry) => entry.id === mediaId)?.filename ?? mediaId;

  const statusText = (item: Item): string => {
    switch (item.state) {
      case "waiting":
        return t.waiting;
      case "uploading":
        return t.uploading;
      case "uploaded":
        return t.uploaded;
      case "duplicate":
        return t.duplicateOf(nameOf(item.duplicateOf ?? ""));
      case "refused":
        return t.refused(item.detail ?? "");
    }
  };

  return (
    <>
      <h2 id="media-heading">{t.mediaList}</h2>
      {mediaError !== null && (
        <p role="alert" class="error">
          {t.error(mediaError)}
        </p>
      )}
      {media === null && mediaError === null && <p class="muted">{t.loading}</p>}
      {media !== null && media.length === 0 && <p>{t.noMedia}</p>}
      {media !== null && media.length > 0 && (
        <table class="data" aria-labelledby="media-heading">
          <thead>
            <tr>
              <th scope="col">{t.filename}</th>
              <th scope="col">{t.kind}</th>
              <th scope="col" class="num">
                {t.size}
              </th>
              <th scope="col">{t.status}</th>
            </tr>
          </thead>
          <tbody>
            {media.map((entry) => (
              <tr key={entry.id}>
                <td>
                  <Link href={`/cases/${props.caseId}/media/${entry.id}`}>{entry.filename ?? entry.id}</Link>
                </td>
                <td>{entry.kind ?? entry.content_type}</td>
                <td class="num">{formatBytes(lang, entry.size)}</td>
                <td>{entry.failure_reason ? `${entry.status}: ${entry.failure_reason}` : entry.status}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <h2>{t.upload}</h2>
      {!props.rights.upload ? (
        <p>{t.noUploadRight}</p>
      ) : (
        <div
          role="region"
          aria-label={t.dropFiles}
          class={dragging ? "drop-zone dragging" : "drop-zone"}
          onDragEnter={(event) => {
            event.preventDefault();
            setDragging(true);
          }}
          onDragOver={(event) => {
            event.preventDefault();
            if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
          }}
          onDragLeave={(event) => {
            if (!event.currentTarget.contains(event.relatedTarget as Node | null)) setDragging(false);
          }}
          onDrop={(event) => {
            event.preventDefault();
            setDragging(false);
            add(event.dataTransfer?.files ?? null);
          }}
        >
          <p>{t.dropHint}</p>
          <label for="choose-files" class="file-label">
            {t.chooseFiles}
          </label>
          <input
            id="choose-files"
            type="file"
            multiple
            onChange={(event) => {
              add(event.currentTarget.files);
              event.currentTarget.value = "";
            }}
          />
        </div>
      )}

      {items.length > 0 && (
        <>
          <h3>{t.uploadsHeading}</h3>
          <ul class="upload-list">
            {items.map((item) => (
              <li key={item.key} class={`upload ${item.state}`}>
                <span class="upload-name">{item.file.name}</span>
                <progress max={100} value={item.progress} aria-label={t.uploadProgress(item.file.name)} />
                <span class="upload-status">{statusText(item)}</span>
              </li>
            ))}
          </ul>
          {!busy && stored.length > 0 && props.rights.analyse && (
            <button type="button" class="primary" onClick={analyse} disabled={submitting}>
              {t.analyse}
            </button>
          )}
          {submitting && <p class="muted">{t.analysing}</p>}
          {submitError !== null && (
            <p role="alert" class="error">
              {submitError}
            </p>
          )}
        </>
      )}
    </>
  );
}

/** The reason an upload was refused: the API's problem detail, else the error's message. */
function refusal(error: Error | tus.DetailedError): string {
  const response = "originalResponse" in error ? error.originalResponse : null;
  if (response) {
    try {
      const body = JSON.parse(response.getBody()) as { detail?: string | null; title?: string };
      if (body.detail) return body.detail;
      if (body.title) return body.title;
    } catch {
      /* not a problem document */
    }
    return `${response.getStatus()}`;
  }
  return error.message;
}
