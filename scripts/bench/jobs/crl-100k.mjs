import { crlBuildJob } from "./crl-build.mjs";
import opensslGencrl from "../peers/openssl-gencrl.mjs";

/** 100,000 revoked certificates (--quick: 10,000); peer: openssl ca -gencrl of the same count. */
export default crlBuildJob({
  name: "crl_100k",
  key: "crl_100k_s",
  count: (o) => (o.quick ? 10_000 : 100_000),
  peer: { ...opensslGencrl, run: (ctx) => opensslGencrl.run(ctx, { count: ctx.opts.quick ? 10_000 : 100_000 }) },
  ratios: [{ key: "ratio_crl_100k_s", ours: "crl_100k_s", peer: "peer_crl_100k_s", target: "≤ 0.5" }],
});
