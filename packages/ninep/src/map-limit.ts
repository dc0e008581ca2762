/**
 * Maps `items` through `fn` with at most `limit` calls in flight, keeping the order. After the
 * first rejection no further call starts, and the whole rejects with that first error once the
 * calls already started have ended: a caller that then releases what they use (clunks the fid
 * they walk from) does not pull it from under a call still in flight.
 */
export async function mapLimit<A, B>(
  items: readonly A[],
  limit: number,
  fn: (a: A) => Promise<B>,
): Promise<B[]> {
  const out = new Array<B>(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as A);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
  return out;
}
