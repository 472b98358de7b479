import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { api, problemText, type Schemas } from "../api/client";
import { useI18n } from "../i18n";
import { Link, navigate } from "../router";
import { formatClock } from "./MediaClock";

type Hit = Schemas["SegmentHit"];

/** Search across the case's transcripts and text in frames; the query is kept in the URL (?q=). */
export function SearchPage(props: { caseId: string; query: string }): JSX.Element {
  const { t } = useI18n();
  const [text, setText] = useState(props.query);
  const [results, setResults] = useState<Hit[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  // The input follows the URL when the URL changes (back, forward), not while it is being typed in.
  const shown = useRef(props.query);
  useEffect(() => {
    if (shown.current !== props.query) setText(props.query);
    shown.current = props.query;
  }, [props.query]);

  useEffect(() => {
    const query = props.query.trim();
    setResults(null);
    setError(null);
    if (!query) return;
    let live = true;
    setBusy(true);
    void api
      .GET("/api/v1/cases/{case_id}/search", { params: { path: { case_id: props.caseId }, query: { q: query, limit: 20 } } })
      .then(({ data, error: failure, response }) => {
        if (!live) return;
        setBusy(false);
        if (data) setResults(data.results);
        else setError(problemText(failure, response));
      });
    return () => {
      live = false;
    };
  }, [props.caseId, props.query]);

  const submit = (event: Event) => {
    event.preventDefault();
    const query = text.trim();
    navigate(`/cases/${props.caseId}/search${query ? `?q=${encodeURIComponent(query)}` : ""}`);
  };

  return (
    <div class="search-page">
      <h2>{t.search}</h2>
      <form class="search-form" role="search" onSubmit={submit}>
        <label for="search-input">{t.searchLabel}</label>
        <input id="search-input" type="search" value={text} maxLength={500}
          onInput={(event) => setText(event.currentTarget.value)} />
        <button type="submit" class="primary">
          {t.searchButton}
        </button>
      </form>
      {busy && <p class="muted">{t.loading}</p>}
      {error !== null && (
        <p role="alert" class="error">
          {t.error(error)}
        </p>
      )}
      {results !== null && (
        <>
          <h3 id="search-results-heading">{t.searchResults(results.length)}</h3>
          {results.length === 0 ? (
            <p>{t.searchNothing}</p>
          ) : (
            <ol class="search-results" aria-labelledby="search-results-heading">
              {results.map((hit) => {
                const at = hit.source === "ocr" ? (hit.timestamp_s ?? hit.start) : hit.start;
                const name = hit.filename ?? hit.media_id;
                return (
                  <li key={`${hit.media_id}-${hit.segment_id}`} class="search-result">
                    <Link href={`/cases/${props.caseId}/media/${hit.media_id}?t=${Math.round(at * 100) / 100}`}>
                      {t.searchOpenAt(name, formatClock(at))}
                    </Link>{" "}
                    <span class="tag">{hit.source === "ocr" ? t.searchOcr : t.searchSpeech}</span>
                    {hit.speaker && <span class="muted"> {hit.speaker}</span>}
                    {hit.language && <span class="muted"> · {hit.language}</span>}
                    <p class="search-text">{hit.text}</p>
                    {hit.translation && <p class="muted search-text">{hit.translation}</p>}
                  </li>
                );
              })}
            </ol>
          )}
        </>
      )}
    </div>
  );
}
