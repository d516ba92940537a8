/**
 * The asynchronous form of a synchronous class's methods: what a test's promisifying adapter
 * over a synchronous SQLite class offers, to run one scenario against it and the PostgreSQL store.
 */
export type Promised<P> = {
  [K in keyof P]: P[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : P[K];
};
