#!/usr/bin/env node
// An HTTPS service that serves with the certificate cert-agent keeps in --dir, and follows it:
// every renewal the agent publishes is swapped in without a restart (new connections get the new
// certificate, open ones keep theirs), and the agent's OCSP answer is stapled.
//
//   node examples/sidecar/server.mjs --dir /var/lib/cert-agent/tls [--listen 127.0.0.1:9443]
//
// GET / answers JSON: the serial it serves with, and the client certificate's SANs when the client
// presented one that chains to the agent's ca.pem (mTLS; see client.mjs). Clients without a
// certificate are served too: set rejectUnauthorized below to true to require one.
import { createServer } from "node:https";
import { parseArgs } from "node:util";
import { CertificateWatcher } from "fleetca/reload";

const { values } = parseArgs({
  options: { dir: { type: "string" }, listen: { type: "string", default: "127.0.0.1:9443" } },
});
if (!values.dir) {
  console.error("usage: server.mjs --dir CERT_AGENT_OUT_DIR [--listen HOST:PORT]");
  process.exit(2);
}
const sep = values.listen.lastIndexOf(":");
const host = values.listen.slice(0, sep);
const port = Number(values.listen.slice(sep + 1));

// Throws if the directory holds no valid set yet: start the service after cert-agent's first publication.
const certs = CertificateWatcher.open(values.dir, { secureContext: { minVersion: "TLSv1.2" } });
certs.on("reloaded", (e) => console.log(`reloaded serial=${e.serial} not_after=${e.notAfter.toISOString()} stapling=${e.stapling}`));
certs.on("rejected", (e) => console.error(`ignored a published set: ${e.reason}`));
certs.on("error", (e) => console.error(`watch error: ${e.message}`));

const server = createServer({ ...certs.serverOptions(), requestCert: true, rejectUnauthorized: false }, (req, res) => {
  const tls = req.socket;
  const client = tls.authorized ? tls.getPeerCertificate().subjectaltname ?? null : null;
  res.setHeader("content-type", "application/json");
  res.end(`${JSON.stringify({ serial: tls.getCertificate()?.serialNumber?.toLowerCase() ?? null, client })}\n`);
});
certs.attach(server); // setSecureContext on each new set, OCSP stapling

server.listen(port, host, () => {
  const a = server.address();
  console.log(`listening url=https://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port} serial=${certs.current.serial}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    void certs.close().then(() => process.exit(0));
  });
}
