// Following a job: its server-sent-events route read with fetch (EventSource cannot send the
// Authorization header), parsed line by line; polling GET .../jobs/{job_id} every 2 s when the
// stream cannot be opened or breaks off before the job has ended.
import { api, type JobView } from "./client";

export const POLL_MS = 2000;
const FINAL = new Set(["Succeeded", "PartiallySucceeded", "Failed", "Cancelled"]);

export function isFinal(phase: string): boolean {
  return FINAL.has(phase);
}

export interface SseEvent {
  event: string;
  data: string;
}

/** Splits a text/event-stream into events (https://html.spec.whatwg.org/#event-stream-interpretation). */
export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];

  constructor(private readonly emit: (event: SseEvent) => void) {}

  push(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) return;
      if (match[0] === "\r" && match.index === this.buffer.length - 1) return; // maybe \r\n split
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === "") {
      if (this.data.length > 0) this.emit({ event: this.event || "message", data: this.data.join("\n") });
      this.event = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return; // a comment: the heartbeat
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
  }
}

export type Mode = "stream" | "polling";

/**
 * Calls `update` with every view of the job until it has ended or `signal` aborts; `mode` says
 * whether the stream or polling delivers them.
 */
export async function followJob(
  caseId: string,
  jobId: string,
  update: (view: JobView) => void,
  mode: (mode: Mode) => void,
  signal: AbortSignal,
  { stream = true }: { stream?: boolean } = {},
): Promise<void> {
  let last: JobView | null = null;
  if (stream) {
    try {
      mode("stream");
      last = await readStream(caseId, jobId, (view) => {
        last = view;
        update(view);
      }, signal);
    } catch {
      if (signal.aborted) return;
    }
    if (signal.aborted || (last !== null && isFinal(last.phase))) return;
  }
  mode("polling");
  while (!signal.aborted) {
    try {
      const { data, response } = await api.GET("/api/v1/cases/{case_id}/jobs/{job_id}", {
        params: { path: { case_id: caseId, job_id: jobId } },
        signal,
      });
      if (data) {
        update(data);
        if (isFinal(data.phase)) return;
      } else if (response.status === 401 || response.status === 403 || response.status === 404) {
        return; // gone, or no longer ours to see: nothing more to follow
      }
    } catch {
      if (signal.aborted) return;
    }
    await sleep(POLL_MS, signal);
  }
}

async function readStream(
  caseId: string,
  jobId: string,
  update: (view: JobView) => void,
  signal: AbortSignal,
): Promise<JobView | null> {
  const { data, response } = await api.GET("/api/v1/cases/{case_id}/jobs/{job_id}/events", {
    params: { path: { case_id: caseId, job_id: jobId } },
    headers: { Accept: "text/event-stream" },
    parseAs: "stream",
    signal,
  });
  if (!response.ok || !data) throw new Error(`stream: ${response.status}`);
  let last: JobView | null = null;
  const parser = new SseParser(({ event, data: text }) => {
    if (event !== "job") return;
    last = JSON.parse(text) as JobView;
    update(last);
  });
  const reader = data.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(value);
  }
  parser.push("\n\n");
  return last;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
