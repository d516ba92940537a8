/** Input larger than this is hashed on the event loop in slices rather than copied whole into a crypto job. */
export const LARGE_INPUT_OCTETS = 1024 * 1024;
const SLICE_OCTETS = 1024 * 1024;

/**
 * Feeds `data` to a Sign/Verify/Hash one slice at a time, giving the event loop a turn between
 * slices. Node's one-shot async crypto.sign/verify copy their whole input on the calling thread
 * first: ~130 ms of stall for a 40 MB CRL (page faults of the copy), which is what this avoids;
 * the digest of a slice takes a few milliseconds.
 */
export async function updateInSlices(h: { update(data: Uint8Array): unknown }, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length; off += SLICE_OCTETS) {
    h.update(data.subarray(off, off + SLICE_OCTETS));
    if (off + SLICE_OCTETS < data.length) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
