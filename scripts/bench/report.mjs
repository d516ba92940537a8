/** Rounding for display and JSON: figures from 2 shared cores do not deserve more digits. */
export function round(x, digits = 0) {
  if (x === null || x === undefined || !Number.isFinite(x)) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Ours / peer, or null when either side is missing. */
export function ratio(ours, peer) {
  return ours === null || ours === undefined || !peer ? null : round(ours / peer, 2);
}

/** One table for the whole run: job, our figure, the peer's, the ratio and its target, wall time of both. */
export function printTable(rows) {
  const head = ["job", "fleetca", "peer", "ratio (target)", "took"];
  const body = rows.map((r) => [r.job, r.ours, r.peer ?? "", r.ratio ?? "", r.notes ?? ""]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => String(b[i]).length)));
  const line = (cells) => "| " + cells.map((c, i) => String(c).padEnd(widths[i])).join(" | ") + " |";
  console.log(line(head));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const b of body) console.log(line(b));
}
