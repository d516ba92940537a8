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

/**
 * Returns the DER of `text` when it is exactly one PEM block with one of `labels` and nothing but
 * whitespace around it; null otherwise. For input that decides what gets signed (a CSR): RFC 7468
 * §5.2 lets a parser skip explanatory text around the block, and fromPem takes the first of
 * several, but then two parties can read one field differently (a second block, or text a
 * C-string reader stops at, such as a leading NUL). "Whitespace" is RFC 7468's (SP, HT, CR, LF,
 * VT, FF), not Unicode's: a BOM or a no-break space is junk too.
 */
export function fromSinglePem(text: string, labels: readonly string[]): Buffer | null {
  const m = /^[ \t\r\n\v\f]*-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/= \t\r\n\v\f]*)-----END \1-----[ \t\r\n\v\f]*$/.exec(text);
  if (!m || !labels.includes(m[1]!)) return null;
  const body = m[2]!.replace(/[ \t\r\n\v\f]+/g, "");
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
