import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempDir } from "../cleanup.mjs";
import { runOk } from "../processes.mjs";

export const PEER_LEAF_SERIAL = "5A0102030405060708090A0B0C0D0E0F";

/**
 * A throwaway openssl CA for the peers, with the same key type as fleetca's default
 * intermediate (ECDSA P-256, SHA-256) so signatures cost the same on both sides; it also signs
 * its own OCSP answers, as fleetca's intermediate does. One leaf, an index.txt that says it is
 * valid, and the same two OCSP requests as fleetca's jobs (no nonce / nonce), made by openssl.
 */
export async function createPeerCa() {
  const dir = makeTempDir("peer-ca");
  const f = (n) => join(dir, n);
  const o = { timeoutMs: 15_000 };
  await runOk("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca.key")], o);
  await runOk("openssl", ["req", "-x509", "-new", "-key", f("ca.key"), "-sha256", "-days", "30", "-subj", "/CN=bench peer CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", "-out", f("ca.pem")], o);
  await runOk("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("leaf.key")], o);
  await runOk("openssl", ["req", "-new", "-key", f("leaf.key"), "-subj", "/CN=peer-leaf.internal", "-out", f("leaf.csr")], o);
  await runOk("openssl", ["x509", "-req", "-in", f("leaf.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-set_serial", `0x${PEER_LEAF_SERIAL}`,
    "-days", "7", "-sha256", "-out", f("leaf.pem")], o);
  await runOk("openssl", ["ocsp", "-issuer", f("ca.pem"), "-cert", f("leaf.pem"), "-no_nonce", "-reqout", f("req-no-nonce.der")], o);
  await runOk("openssl", ["ocsp", "-issuer", f("ca.pem"), "-cert", f("leaf.pem"), "-reqout", f("req-nonce.der")], o);
  writeFileSync(f("index.txt"), `V\t${opensslTime(new Date(Date.now() + 7 * 86_400_000))}\t\t${PEER_LEAF_SERIAL}\tunknown\t/CN=peer-leaf.internal\n`);
  return { dir, caKey: f("ca.key"), caPem: f("ca.pem"), leafPem: f("leaf.pem"), reqNoNonce: f("req-no-nonce.der"), reqNonce: f("req-nonce.der"), index: f("index.txt") };
}

/** openssl index.txt time: YYMMDDHHMMSSZ. */
export function opensslTime(d) {
  return d.toISOString().replace(/[-:T]/g, "").slice(2, 14) + "Z";
}
