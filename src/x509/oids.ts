/** Object identifiers fleetca reads or writes, named as their RFCs name them. */
export const OID = {
  commonName: "2.5.4.3", // X.520
  organizationName: "2.5.4.10",
  basicConstraints: "2.5.29.19", // RFC 5280 §4.2.1.9
  keyUsage: "2.5.29.15", // §4.2.1.3
  extKeyUsage: "2.5.29.37", // §4.2.1.12
  subjectKeyIdentifier: "2.5.29.14", // §4.2.1.2
  authorityKeyIdentifier: "2.5.29.35", // §4.2.1.1
  subjectAltName: "2.5.29.17", // §4.2.1.6
  crlDistributionPoints: "2.5.29.31", // §4.2.1.13
  cRLNumber: "2.5.29.20", // §5.2.3
  cRLReasons: "2.5.29.21", // §5.3.1
  authorityInfoAccess: "1.3.6.1.5.5.7.1.1", // §4.2.2.1
  adOcsp: "1.3.6.1.5.5.7.48.1",
  adCaIssuers: "1.3.6.1.5.5.7.48.2",
  kpServerAuth: "1.3.6.1.5.5.7.3.1",
  kpClientAuth: "1.3.6.1.5.5.7.3.2",
  extensionRequest: "1.2.840.113549.1.9.14", // RFC 2985 §5.4.2
} as const;
