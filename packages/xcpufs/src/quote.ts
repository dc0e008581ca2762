// Token quoting and tokenising of XCPU text buffers (argv, env, ctl lines, procs cmdlines): the
// shared implementation in @clustermatic/ninep/quote.

export { envLine, QuoteError, quote, quoteAll, tokenize } from "@clustermatic/ninep/quote";
