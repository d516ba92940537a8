#!/usr/bin/env node
// An mTLS client that presents the certificate cert-agent keeps in --dir, and trusts the servers
// that chain to the agent's ca.pem. The watcher's agent() follows the directory: a connection
// opened after a renewal presents the new certificate (keep-alive connections keep theirs).
//
//   node examples/sidecar/client.mjs --dir /var/lib/cert-agent/tls --url https://web-2.internal:9443/
//   [--connect 127.0.0.1]   # connect here instead of resolving the URL's host (the name is still verified)
import { request } from "node:https";
import { parseArgs } from "node:util";
import { CertificateWatcher } from "fleetca/reload";

const { values } = parseArgs({ options: { dir: { type: "string" }, url: { type: "string" }, connect: { type: "string" } } });
if (!values.dir || !values.url) {
  console.error("usage: client.mjs --dir CERT_AGENT_OUT_DIR --url https://HOST:PORT/PATH [--connect ADDRESS]");
  process.exit(2);
}
const certs = CertificateWatcher.open(values.dir);
const agent = certs.agent();
const url = new URL(values.url);

const body = await new Promise((resolve, reject) => {
  const req = request(
    {
      host: values.connect ?? url.hostname,
      servername: url.hostname, // the name the server's certificate must carry
      port: url.port || 443,
      path: url.pathname + url.search,
      agent,
    },
    (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`HTTP ${res.statusCode}: ${text}`))));
    },
  );
  req.on("error", reject);
  req.end();
}).catch((e) => {
  console.error(`client: ${e.message}`);
  process.exitCode = 1;
});
if (body !== undefined) process.stdout.write(body);
agent.destroy();
await certs.close();
