// The first page's data asked for at once, in parallel: when the app starts on a case's page, the
// requests that page makes (the case, its members, the case's files, and on a file's page its transcript)
// are sent as soon as the script runs, sharing the one token refresh with GET /me, instead of one
// after the other as the components mount (refresh, then /me, then the case and its members, then
// the page's own list). A component takes a prefetched answer once (`load`); later loads ask again.
import { api } from "./client";
import { parse } from "../router";

/** A prefetched answer older than this is not used (asked again). */
const FRESH_MS = 10_000;

const loaders = {
  case: (caseId: string) => api.GET("/api/v1/cases/{case_id}", { params: { path: { case_id: caseId } } }),
  members: (caseId: string) =>
    api.GET("/api/v1/cases/{case_id}/members", { params: { path: { case_id: caseId } } }),
  media: (caseId: string) => api.GET("/api/v1/cases/{case_id}/media", { params: { path: { case_id: caseId } } }),
  transcript: (caseId: string, mediaId = "") =>
    api.GET("/api/v1/cases/{case_id}/media/{media_id}/transcript", {
      params: { path: { case_id: caseId, media_id: mediaId } },
    }),
};

type Loaders = typeof loaders;
type Kind = keyof Loaders;

const early = new Map<string, { at: number; answer: Promise<unknown> }>();

/** The answer of `kind` for the case (and file): the prefetched one if it is fresh (used once), else a
 * new request. */
export function load<K extends Kind>(kind: K, caseId: string, mediaId = ""): ReturnType<Loaders[K]> {
  const key = `${kind}:${caseId}:${mediaId}`;
  const hit = early.get(key);
  early.delete(key);
  if (hit && Date.now() - hit.at < FRESH_MS) return hit.answer as ReturnType<Loaders[K]>;
  return loaders[kind](caseId, mediaId) as ReturnType<Loaders[K]>;
}

function prefetch(kind: Kind, caseId: string, mediaId = ""): void {
  const waiting = early.get(`${kind}:${caseId}:${mediaId}`);
  if (waiting && Date.now() - waiting.at < FRESH_MS) return; // asked already, not taken yet
  const answer = loaders[kind](caseId, mediaId);
  answer.catch(() => undefined); // a failure is seen (and shown) by the component that takes it
  early.set(`${kind}:${caseId}:${mediaId}`, { at: Date.now(), answer });
}

/** Sends the requests of the page at `pathname`: when the app starts with a session, and when a case's
 * page mounts inside the app (so its heading's and its tab's data are not asked one after the other). */
export function prefetchPage(pathname: string, search: string): void {
  const route = parse(pathname, search);
  if (!("caseId" in route)) return;
  prefetch("case", route.caseId);
  prefetch("members", route.caseId);
  if (route.name === "files" || route.name === "media") prefetch("media", route.caseId);
  if (route.name === "media") prefetch("transcript", route.caseId, route.mediaId);
}
