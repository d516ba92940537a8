import { inspect } from "node:util";

/**
 * Probes every 100 ms until `until` holds of what `probe` saw, failing once `deadlineMs` have passed,
 * and says how long it took: a SPEC deadline ("within 5 s") measured, not slept. The deadline is the
 * caller's, so the SPEC's number stays visible where it is asserted.
 */
export async function eventually<T>(
  deadlineMs: number,
  what: string,
  probe: () => Promise<T>,
  until: (seen: T) => boolean,
): Promise<{ seen: T; elapsedMs: number }> {
  const start = Date.now();
  for (;;) {
    const seen = await probe();
    if (until(seen)) return { seen, elapsedMs: Date.now() - start };
    if (Date.now() - start > deadlineMs) {
      throw new Error(`${what}: not within ${deadlineMs} ms; last seen:\n${typeof seen === "string" ? seen : inspect(seen)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
