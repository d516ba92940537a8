import { isIP } from "node:net";

/**
 * Where relying parties reach the public listener: the base of the OCSP, CRL and caIssuers URLs
 * every certificate carries (RFC 5280 §4.2.1.13, §4.2.2.1). Unset, it follows `listen.public`,
 * so a changed port cannot leave certificates naming another one (issue 16). A wildcard bind
 * names `localhost`: the only name known to reach it, and a start-up warning says to set it.
 */
export function publicUrlFromListen(listenPublic: string): string {
  const i = listenPublic.lastIndexOf(":");
  const host = listenPublic.slice(0, i).replace(/^\[|\]$/g, "");
  const port = listenPublic.slice(i + 1);
  const name = host === "" || host === "0.0.0.0" || host === "::" ? "localhost" : host.includes(":") ? `[${host}]` : host;
  return `http://${name}:${port}`;
}

/**
 * Why a derived publicUrl is probably not what relying parties on other hosts can reach: the
 * listener is on a wildcard or non-loopback address, yet certificates name what the bind says.
 * Null when publicUrl was set, or the listener is loopback only (a single-host setup).
 */
export function derivedPublicUrlWarning(listenPublic: string, publicUrl: string, source: "publicUrl" | "listen.public"): string | null {
  if (source === "publicUrl") return null;
  const host = listenPublic.slice(0, listenPublic.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  if (host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."))) return null;
  return `publicUrl is not set: certificates name ${publicUrl} for OCSP, CRLs and caIssuers, derived from listen.public ${listenPublic}; set publicUrl (or FLEETCA_PUBLIC_URL) to the URL relying parties on other hosts reach`;
}
