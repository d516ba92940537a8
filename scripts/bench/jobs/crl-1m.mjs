import { crlBuildJob } from "./crl-build.mjs";

/** 1,000,000 revoked certificates (--quick: 50,000): memory and time at fleet scale; no peer. */
export default crlBuildJob({
  name: "crl_1m",
  key: "crl_1m_s",
  count: (o) => (o.quick ? 50_000 : 1_000_000),
});
