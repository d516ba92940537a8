import { readFileSync } from "node:fs";

/** The daemon's worker processes (listen.publicWorkers / apiWorkers): the primary's children running public-worker.js. */
export function workerPids(primary: number): number[] {
  let kids: number[];
  try {
    kids = readFileSync(`/proc/${primary}/task/${primary}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return kids.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("public-worker.js");
    } catch {
      return false;
    }
  });
}
