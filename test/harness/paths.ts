import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Tests run the built CLI exactly as an operator would (npm test builds first). */
export const FLEETCA_BIN = join(REPO, "dist", "cli", "fleetca.js");
