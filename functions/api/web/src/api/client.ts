// The API client: openapi-fetch over the types generated from the gateway's OpenAPI document
// (`npm run generate` writes src/api/schema.d.ts from ../../openapi.json).
//
// Tokens (docs/web.md): the access token lives in memory only; the refresh token in sessionStorage,
// so a reload of the tab keeps the session and closing the tab ends it. Every request carries
// `Authorization: Bearer <access token>`; a 401 refreshes once (POST /api/v1/auth/refresh, shared by
// every request waiting for it, since a refresh token is good for one use) and retries the request.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type CaseOut = Schemas["CaseOut"];
export type MediaOut = Schemas["MediaOut"];
export type JobView = Schemas["JobView"];
export type Me = Schemas["Me"];
export type MemberOut = Schemas["MemberOut"];
export type CaseReport = Schemas["CaseReport"];
export type ReportVersion = Schemas["ReportVersion"];
export type Problem = Schemas["ProblemModel"];

const REFRESH_KEY = "aima.refresh_token";
/** Refresh this long before the access token expires (at most a quarter of its lifetime), so a
 * request rarely meets a 401. */
const EARLY_MS = 30_000;

let accessToken: string | null = null;
let expiresAt = 0;
let early = EARLY_MS;
let refreshing: Promise<boolean> | null = null;
const signedOutListeners = new Set<() => void>();

function refreshToken(): string | null {
  try {
    return sessionStorage.getItem(REFRESH_KEY);
  } catch {
    return null;
  }
}

function keep(pair: Schemas["TokenPair"]): void {
  accessToken = pair.access_token;
  expiresAt = Date.now() + pair.expires_in * 1000;
  early = Math.min(EARLY_MS, (pair.expires_in * 1000) / 4);
  try {
    sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
  } catch {
    /* without sessionStorage the session lasts until the access token expires */
  }
}

function forget(): void {
  accessToken = null;
  expiresAt = 0;
  try {
    sessionStorage.removeItem(REFRESH_KEY);
  } catch {
    /* nothing kept */
  }
}

/** Whether this tab holds a session (an access token, or a refresh token to get one). */
export function hasSession(): boolean {
  return accessToken !== null || refreshToken() !== null;
}

/** Called when the session ends without the user signing out (the refresh was refused). */
export function onSignedOut(listener: () => void): () => void {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

/** The client for the auth routes themselves: no bearer token, no refresh. */
const bare = createClient<paths>({ baseUrl: "" });

/** Renew the tokens once; every caller waiting meanwhile shares the same attempt. */
export function refresh(): Promise<boolean> {
  if (refreshing) return refreshing;
  const token = refreshToken();
  if (token === null) return Promise.resolve(false);
  refreshing = (async () => {
    try {
      const { data, response } = await bare.POST("/api/v1/auth/refresh", {
        body: { refresh_token: token },
      });
      if (data) {
        keep(data);
        return true;
      }
      if (response.status === 400 || response.status === 401 || response.status === 422) {
        forget();
        signedOutListeners.forEach((listener) => listener());
      }
      return false;
    } catch {
      return false; // the network: keep the refresh token for the next attempt
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** A usable access token: refreshed first when missing or about to expire. */
export async function freshToken(): Promise<string | null> {
  if (accessToken === null || Date.now() > expiresAt - early) {
    if (refreshToken() !== null) await refresh();
  }
  return accessToken;
}

/** The access token was refused: the next request refreshes first (unless it changed meanwhile). */
export function refused(token: string | null): void {
  if (token !== null && token === accessToken) expiresAt = 0;
}

export async function login(username: string, password: string): Promise<Problem | null> {
  const { data, error, response } = await bare.POST("/api/v1/auth/token", {
    body: { username, password, grant_type: "password", scope: "" },
    bodySerializer: (body) => {
      const form = new URLSearchParams();
      for (const [key, value] of Object.entries(body)) {
        if (typeof value === "string") form.set(key, value);
      }
      return form;
    },
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
  });
  if (data) {
    keep(data);
    return null;
  }
  return asProblem(error, response);
}

/** The sign-ins the gateway offers (password; OIDC where configured). */
export async function signInOptions(): Promise<Schemas["SignInOptions"]> {
  const { data } = await bare.GET("/api/v1/auth/providers");
  return data ?? { password: true, oidc: null };
}

/** After an OIDC sign-in: the session the gateway's callback left in its one-minute HttpOnly cookie
 * (POST /api/v1/auth/oidc/session, which rotates its refresh token and removes the cookie). */
export async function takeOverSignIn(): Promise<Problem | null> {
  const { data, error, response } = await bare.POST("/api/v1/auth/oidc/session", { credentials: "same-origin" });
  if (data) {
    keep(data);
    return null;
  }
  return asProblem(error, response);
}

export async function logout(): Promise<void> {
  try {
    await freshToken(); // a refresh now, not during the call, so the token sent is the current one
    const token = refreshToken();
    await api.POST("/api/v1/auth/logout", { body: token === null ? null : { refresh_token: token } });
  } catch {
    /* signed out locally anyway */
  } finally {
    forget();
  }
}

const pending = new Map<string, Request>();

const bearer: Middleware = {
  async onRequest({ request, id }) {
    const token = await freshToken();
    if (token !== null) request.headers.set("Authorization", `Bearer ${token}`);
    // Kept for one retry after a 401 (a request's body can be read only once).
    pending.set(id, request.clone());
    return request;
  },
  async onResponse({ request, response, id }) {
    const copy = pending.get(id);
    pending.delete(id);
    if (response.status !== 401 || copy === undefined || refreshToken() === null) return response;
    const sent = request.headers.get("Authorization")?.replace(/^Bearer /, "") ?? null;
    refused(sent);
    if (sent === accessToken || accessToken === null) {
      if (!(await refresh())) return response;
    }
    if (accessToken === null) return response;
    copy.headers.set("Authorization", `Bearer ${accessToken}`);
    return fetch(copy);
  },
  onError({ id }) {
    pending.delete(id);
  },
};

/** The typed client for every /api/v1 route (paths as in openapi.json). */
export const api = createClient<paths>({ baseUrl: "" });
api.use(bearer);

/** The problem-details text of an error answer: its detail, else its title, else the status. */
export function problemText(error: unknown, response?: Response): string {
  const problem = asProblem(error, response);
  return problem.detail ?? problem.title;
}

function asProblem(error: unknown, response?: Response): Problem {
  if (error !== null && typeof error === "object" && "title" in error) {
    const problem = error as Problem;
    if (typeof problem.title === "string") return problem;
  }
  const status = response?.status ?? 0;
  const title = typeof error === "string" && error ? error : `${status} ${response?.statusText ?? ""}`.trim();
  return { type: "about:blank", title: title || "Network error", status, detail: null };
}
