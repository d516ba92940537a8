#!/usr/bin/env node
/**
 * Makes the request bodies of the issuance jobs BEFORE their timed window, in its own processes
 * (spawned by the job, so their CPU is spent before the daemon is measured), one child process
 * per core: every item is a fresh ECDSA P-256 key, a PKCS#10 CSR for `<sub>.bench.internal`
 * (subject CN and a DNS SAN, ecdsa-with-SHA256) and, for fleetca, a one-time ES256 JWT for the
 * bench `jwt` provisioner (its own sub and jti, iat now, exp +1 h, aud/iss as configured).
 *
 *   node sign-bodies.mjs --out DIR --count N --files K --format fleetca|cfssl [--keys]
 *       [--jwt-key PEM --kid KID --iss ISS --aud AUD] [--prefix P]
 *
 * Writes DIR/bodies.txt.0 … DIR/bodies.txt.<K-1> (item j goes to file j % K: one file per wrk
 * thread), one item a line: `<jwt>\t<JSON body>` (cfssl: an empty token and cfssl's sign body),
 * plus `\t<PKCS#8 PEM, JSON-quoted>` with --keys (the renew job needs each client's key). Prints
 * one JSON line {count, ms, processes, files}. The CSR DER is built by hand (a fixed layout):
 * OpenSSL 3's DER encoder would cost more than the key generation.
 *
 * Keys come from ECDH (the raw point is the SPKI's content) and are imported as a JWK for
 * signing. Not generateKeyPairSync + export({format:"jwk"}): on Node 20.20 that deadlocks now and
 * then (3 runs in 15 here; gdb: ExportJWKEcKey holds the key's mutex while allocating, a GC runs
 * ~KeyGenJob of the same key, which takes that mutex). And not spki/pkcs8 DER: ~400 µs a key.
 * One child process per core does a slice (`--part FROM:TO:INDEX`, writes `<file>.part<INDEX>`).
 */
import { spawn } from "node:child_process";
import { availableParallelism } from "node:os";
import { createECDH, createPrivateKey, randomBytes, sign } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (a.part) {
    const [from, to, index] = a.part.split(":").map(Number);
    const texts = makeItems({ ...a, from, to, jwtKeyPem: a.jwtKey ? readFileSync(a.jwtKey, "utf8") : null });
    texts.forEach((t, k) => writeFileSync(join(a.out, `bodies.txt.${k}.part${index}`), t, { mode: 0o600 }));
    return;
  }
  const t0 = performance.now();
  const procs = Math.max(1, Math.min(availableParallelism(), 4, a.count));
  const per = Math.ceil(a.count / procs);
  const children = [];
  for (let w = 0; w < procs; w++) {
    const from = w * per;
    const to = Math.min(a.count, from + per);
    if (from >= to) break;
    children.push(
      new Promise((resolve, reject) => {
        const c = spawn(process.execPath, [import.meta.filename, ...process.argv.slice(2), "--prefix", a.prefix, "--part", `${from}:${to}:${w}`], { stdio: ["ignore", "ignore", "inherit"] });
        c.once("error", reject);
        c.once("exit", (code, sig) => (code === 0 ? resolve() : reject(new Error(`sign-bodies part ${w} exited ${code ?? sig}`))));
      }),
    );
  }
  await Promise.all(children);
  const files = [];
  for (let k = 0; k < a.files; k++) {
    const f = join(a.out, `bodies.txt.${k}`);
    const parts = children.map((_, w) => join(a.out, `bodies.txt.${k}.part${w}`));
    writeFileSync(f, parts.map((p) => readFileSync(p)).reduce((x, y) => Buffer.concat([x, y]), Buffer.alloc(0)), { mode: 0o600 });
    parts.forEach((p) => rmSync(p));
    files.push(f);
  }
  const ms = performance.now() - t0;
  console.log(JSON.stringify({ count: a.count, ms: Math.round(ms), processes: children.length, files }));
}

function parseArgs(argv) {
  const a = { files: 1, format: "fleetca", keys: false, prefix: randomBytes(3).toString("hex") };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === "--out") a.out = v();
    else if (k === "--count") a.count = Number(v());
    else if (k === "--files") a.files = Number(v());
    else if (k === "--format") a.format = v();
    else if (k === "--keys") a.keys = true;
    else if (k === "--jwt-key") a.jwtKey = v();
    else if (k === "--kid") a.kid = v();
    else if (k === "--iss") a.iss = v();
    else if (k === "--aud") a.aud = v();
    else if (k === "--prefix") a.prefix = v();
    else if (k === "--part") a.part = v();
    else throw new Error(`sign-bodies: unknown argument ${k}`);
  }
  if (!a.out || !(a.count > 0) || !(a.files > 0)) throw new Error("sign-bodies: --out and --count are required");
  if (!["fleetca", "cfssl"].includes(a.format)) throw new Error("sign-bodies: --format fleetca|cfssl");
  if (a.format === "fleetca" && !(a.jwtKey && a.kid && a.iss && a.aud)) throw new Error("sign-bodies: fleetca bodies need --jwt-key --kid --iss --aud");
  return a;
}

// ---- a child: items [from, to) -------------------------------------------------------------

function makeItems({ from, to, files, format, keys, prefix, jwtKeyPem, kid, iss, aud }) {
  const jwtKey = jwtKeyPem ? createPrivateKey(jwtKeyPem) : null;
  const jwtHeader = b64url(JSON.stringify({ alg: "ES256", kid, typ: "JWT" }));
  const out = Array.from({ length: files }, () => []);
  const iat = Math.floor(Date.now() / 1000);
  for (let j = from; j < to; j++) {
    const sub = `h${prefix}-${j}`;
    const dns = `${sub}.bench.internal`;
    const { privateKey, spki } = newP256Key();
    const csrPem = pem(csrDer(spki, privateKey, dns), "CERTIFICATE REQUEST");
    let line;
    if (format === "fleetca") {
      const payload = b64url(JSON.stringify({ iss, aud, sub, iat, exp: iat + 3600, jti: randomBytes(12).toString("base64url") }));
      const input = `${jwtHeader}.${payload}`;
      const sig = sign("sha256", Buffer.from(input), { key: jwtKey, dsaEncoding: "ieee-p1363" });
      line = `${input}.${sig.toString("base64url")}\t${JSON.stringify({ csr: csrPem })}`;
    } else {
      line = `\t${JSON.stringify({ certificate_request: csrPem, hosts: [dns] })}`;
    }
    if (keys) line += `\t${JSON.stringify(privateKey.export({ type: "pkcs8", format: "pem" }))}`;
    out[j % files].push(line + "\n");
  }
  return out.map((lines) => lines.join(""));
}

const b64url = (s) => Buffer.from(s).toString("base64url");

/** A fresh P-256 key: the private KeyObject (imported from JWK) and its SubjectPublicKeyInfo DER. */
const P256_SPKI_PREFIX = Buffer.from("3059301306072a8648ce3d020106082a8648ce3d030107034200", "hex");
function newP256Key() {
  const e = createECDH("prime256v1");
  const point = e.generateKeys(); // 04 || x || y
  const d = e.getPrivateKey();
  const jwk = {
    kty: "EC",
    crv: "P-256",
    x: point.subarray(1, 33).toString("base64url"),
    y: point.subarray(33, 65).toString("base64url"),
    d: Buffer.concat([Buffer.alloc(32 - d.length), d]).toString("base64url"),
  };
  return { privateKey: createPrivateKey({ key: jwk, format: "jwk" }), spki: Buffer.concat([P256_SPKI_PREFIX, point]) };
}

/** DER TLV. */
function tlv(tag, ...parts) {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}

const OID_CN = Buffer.from("0603550403", "hex");
const OID_EXTENSION_REQUEST = Buffer.from("06092a864886f70d01090e", "hex");
const OID_SAN = Buffer.from("0603551d11", "hex");
const ALG_ECDSA_SHA256 = Buffer.from("300a06082a8648ce3d040302", "hex");

/** CertificationRequest (RFC 2986): version 0, subject CN=dns, the SPKI, extensionRequest{SAN dNSName}. */
function csrDer(spki, privateKey, dns) {
  const name = tlv(0x30, tlv(0x31, tlv(0x30, OID_CN, tlv(0x0c, Buffer.from(dns)))));
  const san = tlv(0x30, OID_SAN, tlv(0x04, tlv(0x30, tlv(0x82, Buffer.from(dns)))));
  const attrs = tlv(0xa0, tlv(0x30, OID_EXTENSION_REQUEST, tlv(0x31, tlv(0x30, san))));
  const info = tlv(0x30, Buffer.from([0x02, 0x01, 0x00]), name, spki, attrs);
  const sig = sign("sha256", info, privateKey);
  return tlv(0x30, info, ALG_ECDSA_SHA256, tlv(0x03, Buffer.from([0]), sig));
}

function pem(der, label) {
  const b = der.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b}\n-----END ${label}-----\n`;
}

// Last, so every const above is initialised before main() uses it.
await main();
