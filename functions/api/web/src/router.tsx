// A small history router: the browser paths of docs/web.md, real links, no hash.
import { useEffect, useState } from "preact/hooks";
import type { AnchorHTMLAttributes, JSX, TargetedMouseEvent } from "preact";

export type Route =
  | { name: "login" }
  | { name: "signedIn"; returnTo: string }
  | { name: "cases" }
  | { name: "files"; caseId: string }
  | { name: "jobs"; caseId: string }
  | { name: "reports"; caseId: string; version: string | null }
  | { name: "persons"; caseId: string }
  | { name: "findings"; caseId: string }
  | { name: "members"; caseId: string }
  | { name: "search"; caseId: string; query: string }
  | { name: "media"; caseId: string; mediaId: string; at: number | null }
  | { name: "notFound" };

const ID = "([A-Za-z0-9_-]{1,36})";

export function parse(pathname: string, search: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/login") return { name: "login" };
  if (path === "/signed-in") return { name: "signedIn", returnTo: new URLSearchParams(search).get("return_to") ?? "/" };
  if (path === "/" || path === "/cases") return { name: "cases" };
  let match = new RegExp(`^/cases/${ID}$`).exec(path);
  if (match) return { name: "files", caseId: match[1]! };
  match = new RegExp(`^/cases/${ID}/jobs$`).exec(path);
  if (match) return { name: "jobs", caseId: match[1]! };
  match = new RegExp(`^/cases/${ID}/persons$`).exec(path);
  if (match) return { name: "persons", caseId: match[1]! };
  match = new RegExp(`^/cases/${ID}/findings$`).exec(path);
  if (match) return { name: "findings", caseId: match[1]! };
  match = new RegExp(`^/cases/${ID}/members$`).exec(path);
  if (match) return { name: "members", caseId: match[1]! };
  match = new RegExp(`^/cases/${ID}/search$`).exec(path);
  if (match) return { name: "search", caseId: match[1]!, query: new URLSearchParams(search).get("q") ?? "" };
  match = new RegExp(`^/cases/${ID}/media/${ID}$`).exec(path);
  if (match) {
    const at = Number(new URLSearchParams(search).get("t"));
    return { name: "media", caseId: match[1]!, mediaId: match[2]!, at: Number.isFinite(at) && at > 0 ? at : null };
  }
  match = new RegExp(`^/cases/${ID}/reports$`).exec(path);
  if (match) {
    const version = new URLSearchParams(search).get("version");
    return { name: "reports", caseId: match[1]!, version: version && /^[1-9][0-9]{0,8}$/.test(version) ? version : null };
  }
  return { name: "notFound" };
}

const listeners = new Set<() => void>();

export function navigate(to: string, { replace = false } = {}): void {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  listeners.forEach((listener) => listener());
}

window.addEventListener("popstate", () => listeners.forEach((listener) => listener()));

/** The current location, re-rendered on every navigation. */
export function useLocation(): { pathname: string; search: string } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const listener = () => setTick((tick) => tick + 1);
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }, []);
  return { pathname: location.pathname, search: location.search };
}

type LinkProps = AnchorHTMLAttributes<HTMLAnchorElement> & { href: string };

/** A real link (opens in a new tab with a modifier key) that navigates in the app otherwise. */
export function Link(props: LinkProps): JSX.Element {
  const { href, onClick, ...rest } = props;
  const click = (event: TargetedMouseEvent<HTMLAnchorElement>) => {
    if (typeof onClick === "function") onClick(event);
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    event.preventDefault();
    navigate(href);
  };
  return <a href={href} onClick={click} {...rest} />;
}
