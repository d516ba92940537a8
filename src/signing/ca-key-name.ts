import { randomBytes } from "node:crypto";

/**
 * The name a new CA key is stored under (a key file on SQLite, a row on PostgreSQL): its role and
 * when it was made, to the second, for the operator reading `fleetca status` or the key table,
 * and three random bytes, so two keys made in the same second (`fleetca init` then `rotate root`
 * from a script, two rotations) do not refuse each other's name.
 */
export function caKeyName(role: "root" | "intermediate" | "audit", at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, "").slice(0, 15).toLowerCase();
  return `${role}-${stamp}-${randomBytes(3).toString("hex")}`;
}
