// Token quoting and tokenising of XCPU text buffers (argv, env, ctl lines, procs cmdlines): the
// shared implementation in @clustermatic/ninep/quote, plus the env file's line format.

import { quote } from "@clustermatic/ninep/quote";

export { QuoteError, quote, quoteAll, tokenize } from "@clustermatic/ninep/quote";

/** Render one environment entry (`NAME=value`) the way the root `env` file lists it. */
export function envLine(name: string, value: string): string {
  return `${quote(`${name}=${value}`)}\n`;
}
