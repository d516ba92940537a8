/** PEM (RFC 7468) encoding and strict decoding of one labelled block. */
export function toPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/**
 * Returns the DER inside the first PEM block whose label is one of `labels`, or null when there
 * is none or its base64 is malformed (RFC 7468 §3 strict form, whitespace tolerated).
 */
export function fromPem(text: string, labels: readonly string[]): Buffer | null {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(text);
  if (!m || !labels.includes(m[1]!)) return null;
  const body = m[2]!.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) return null;
  const der = Buffer.from(body, "base64");
  return der.length > 0 ? der : null;
}

/** All PEM blocks with the given label, in order (a chain or a roots bundle). */
export function allPem(text: string, label: string): Buffer[] {
  const out: Buffer[] = [];
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, "g");
  for (const m of text.matchAll(re)) out.push(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
  return out;
}
