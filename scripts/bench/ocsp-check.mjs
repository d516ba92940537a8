import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runBounded } from "./processes.mjs";

/**
 * Before timing a responder, one request must get a real answer: HTTP 200 and an OCSP response
 * that openssl verifies and that says "good" for the certificate. Otherwise a fast stream of
 * error answers would be measured as throughput. Throws with the reason.
 */
export async function checkOcspAnswer({ url, reqFile, issuer, cert, caFile, dir, nonce = false }) {
  const r = await fetch(url, {
    method: "POST",
    body: readFileSync(reqFile),
    headers: { "Content-Type": "application/ocsp-request" },
    signal: AbortSignal.timeout(15_000),
  });
  if (r.status !== 200) throw new Error(`POST ${url} answered HTTP ${r.status}`);
  const respFile = join(dir, `check-${Date.now()}.der`);
  writeFileSync(respFile, Buffer.from(await r.arrayBuffer()));
  // -no_nonce: openssl has no request of ours to compare a nonce with here (with -respin it would
  // report "Nonce Verify error"); that a nonce request's answer carries one is checked below.
  const v = await runBounded("openssl", ["ocsp", "-respin", respFile, "-issuer", issuer, "-cert", cert, "-CAfile", caFile, "-no_nonce", "-resp_text"], { timeoutMs: 10_000 });
  const out = v.stdout + v.stderr;
  if (!/Response verify OK/.test(out) || !/: good/.test(out)) throw new Error(`OCSP answer not a verified "good": ${out.trim().split("\n").filter((l) => !/^\s/.test(l)).slice(-2).join(" | ")}`);
  if (nonce && !/OCSP Nonce/.test(out)) throw new Error("OCSP answer to a nonce request carries no nonce");
}
