// Small helpers shared by the test files.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls pred() until it returns a truthy value (returned) or throws after timeoutMs. */
export async function waitFor(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Seconds from now until an RFC 3339 timestamp. */
export function secondsUntil(ts) {
  return (Date.parse(ts) - Date.now()) / 1000;
}

const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/** s without ANSI escape sequences (IPython colours its tracebacks). */
export function stripAnsi(s) {
  return s.replace(ANSI, "");
}

/** A signal that is already aborted. */
export function abortedSignal() {
  const ac = new AbortController();
  ac.abort();
  return ac.signal;
}

/** Asserts fn rejects with an AbortError (the reason of an aborted signal). */
export function isAbort(e) {
  return e instanceof Error && e.name === "AbortError";
}
