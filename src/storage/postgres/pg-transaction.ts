import type pg from "pg";

/**
 * Runs `work` in one transaction on one pooled client: BEGIN `mode`, COMMIT if it resolves,
 * ROLLBACK if it throws (then rethrows). A client whose ROLLBACK fails too (connection gone) is
 * destroyed rather than handed back to the pool in an unknown state.
 */
export async function inTransaction<T>(pool: pg.Pool, mode: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(`BEGIN ${mode}`);
  } catch (e) {
    client.release(e as Error);
    throw e;
  }
  let broken: Error | undefined;
  try {
    try {
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (e) {
      await client.query("ROLLBACK").catch((rollbackError: Error) => {
        broken = rollbackError;
      });
      throw e;
    }
  } finally {
    client.release(broken);
  }
}
