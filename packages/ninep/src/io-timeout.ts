/**
 * Calls `onTimeout` once `ms` have passed and the I/O that finished in the meantime has been
 * handled. Node runs due timers before it reads its sockets, so after a stalled event loop (a long
 * synchronous task, a loaded machine) a connect or a reply that arrived in time would otherwise
 * lose to its timer: the timer only schedules the verdict for after the next I/O phase
 * (setImmediate). Returns a function that cancels it.
 */
export function afterIoTimeout(
  ms: number,
  onTimeout: () => void,
  opts: { unref?: boolean } = {},
): () => void {
  let verdict: NodeJS.Immediate | undefined;
  // Only the timer is unref'd (the timeout alone does not keep the process alive). The verdict
  // never is: an unref'd immediate does not keep the loop from sleeping in its poll, so on a quiet
  // process it would wait for the next unrelated event (a silent connection stayed open for good).
  const timer = setTimeout(() => {
    verdict = setImmediate(onTimeout);
  }, ms);
  if (opts.unref) timer.unref();
  return () => {
    clearTimeout(timer);
    if (verdict) clearImmediate(verdict);
  };
}
