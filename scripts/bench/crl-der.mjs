/**
 * Counts the revokedCertificates entries of a DER CRL by walking its outer structure only
 * (RFC 5280 §5.1): fast even for a million entries, where `openssl crl -text | grep -c` takes
 * long and much memory. openssl still checks the signature separately (crl-build job).
 */
export function countCrlEntries(der) {
  const crl = readTlv(der, 0);
  const tbs = readTlv(der, crl.start);
  let p = tbs.start;
  const end = tbs.end;
  const items = [];
  while (p < end) {
    const t = readTlv(der, p);
    items.push(t);
    p = t.end;
  }
  // tbsCertList: version? signature issuer thisUpdate nextUpdate? revokedCertificates? [0] extensions?
  let i = 0;
  if (items[i]?.tag === 0x02) i++; // version
  i += 3; // signature, issuer, thisUpdate
  if (items[i] && (items[i].tag === 0x17 || items[i].tag === 0x18)) i++; // nextUpdate
  const revoked = items[i];
  if (!revoked || revoked.tag !== 0x30) return 0;
  let n = 0;
  for (let q = revoked.start; q < revoked.end; n++) q = readTlv(der, q).end;
  return n;
}

function readTlv(buf, pos) {
  const tag = buf[pos];
  let len = buf[pos + 1];
  let start = pos + 2;
  if (len & 0x80) {
    const k = len & 0x7f;
    len = 0;
    for (let j = 0; j < k; j++) len = len * 256 + buf[start + j];
    start += k;
  }
  if (start + len > buf.length) throw new Error("truncated DER");
  return { tag, start, end: start + len };
}
