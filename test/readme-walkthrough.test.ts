import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { REPO } from "./harness/paths.js";

/**
 * README's five-minute walk-through, run as written (issue 16: it must work from a fresh clone, in
 * a scratch directory, and leave nothing in the repository). Only what names `npm start`'s CA is
 * swapped for this test's daemon: the two URLs and the dataDir line; each must be in README
 * exactly as matched here, so an edit to them fails this test instead of skipping a step.
 */
const URL_LINE = "CA=https://127.0.0.1:8443 PUB=http://127.0.0.1:8080";
const DATADIR_LINE = `printf 'dataDir: %s/ca-data\\n' "$FLEETCA_REPO" > config.yaml`;

function walkthrough(): string {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Five-minute walk-through"));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error("README has no walk-through block");
  return block;
}

describe("README walk-through", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  beforeAll(async () => {
    ws = new CaWorkspace();
    d = await ws.start();
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("runs as written in a scratch directory, ends behind a passphrase, and leaves the repository untouched", async () => {
    const block = walkthrough();
    expect(block).toContain(URL_LINE);
    expect(block).toContain(DATADIR_LINE);
    const script = block.replace(URL_LINE, `CA=${d.apiUrl} PUB=${d.publicUrl}`).replace(DATADIR_LINE, `printf 'dataDir: %s\\n' '${ws.dataDir}' > config.yaml`);
    const gitStatus = () => execFileSync("git", ["status", "--porcelain", "--untracked-files=all"], { cwd: REPO, encoding: "utf8" });
    const before = gitStatus();

    const env: NodeJS.ProcessEnv = { ...ws.env, TMPDIR: ws.dir };
    delete env.FLEETCA_PASSPHRASE;
    const run = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn("bash", ["-e", "-u", "-o", "pipefail", "-c", script], { cwd: REPO, env, stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (b: Buffer) => (out += b.toString()));
      child.stderr.on("data", (b: Buffer) => (err += b.toString()));
      child.on("close", (code) => resolve({ code, out, err }));
      // Step 7's `read -rs`: the new passphrase, as an operator would type it.
      child.stdin.end("walk-through passphrase 7f3\n");
    });
    expect(run.code, `${run.out}\n${run.err}`).toBe(0);
    // Step 1: the status names this CA and the running daemon; steps 2 and 3 verified (`-e` stops at a failure).
    expect(run.out).toContain(`dataDir:      ${ws.dataDir}`);
    expect(run.out.match(/: OK$/gm)).toHaveLength(2);
    expect(run.out).toMatch(/OCSP - URI:http:\/\/127\.0\.0\.1:\d+\/ocsp/);
    expect(run.out).toMatch(/^revoked [0-9a-f]+ at /m);
    expect(run.out).toContain("reloaded");
    expect(run.out).toMatch(/"protection": "development"/);
    expect(run.out).toMatch(/^protection: +passphrase/m);
    expect(gitStatus()).toBe(before);
  });
});
