// Keep the server's own memory small: every program start forks the server, and a fork costs
// in proportion to the anonymous memory the forking process has touched.

import { setFlagsFromString } from "node:v8";

/**
 * Stop V8's young generation from growing past its initial size (two 1 MiB semi-spaces).
 * Under a steady request load V8 otherwise grows it to 2 × 16 MiB, all of which a fork then has
 * to copy the page tables of and fault in again afterwards; the price is more frequent (and
 * smaller) scavenges. Read by V8 each time it considers growing, so it works after start-up.
 */
export function keepYoungGenerationSmall(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
}
