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
  const timer = setTimeout(() => {
    verdict = setImmediate(onTimeout);
    if (opts.unref) verdict.unref();
  }, ms);
  // unref: the timeout alone does not keep the process alive.
  if (opts.unref) timer.unref();
  return () => {
    clearTimeout(timer);
    if (verdict) clearImmediate(verdict);
  };
}
