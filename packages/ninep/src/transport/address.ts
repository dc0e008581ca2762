// Parses and prints 9P service addresses: Plan 9 dial strings, host:port forms and Unix socket paths.

/** A parsed service address: a TCP host and port, or a Unix-domain socket path. */
export type Address = { network: "tcp"; host: string; port: number } | { network: "unix"; path: string };

/** The 9P port ("9fs" in Plan 9's network database). */
export const DEFAULT_9P_PORT = 564;

/** Service names accepted in place of a port number (Plan 9's /lib/ndb/common). */
const SERVICES: Record<string, number> = { "9fs": 564, "9pfs": 564, exportfs: 17007 };

/** Thrown for an address that cannot be parsed; `code` is "E9P_ADDRESS". */
export class AddressError extends Error {
  readonly code = "E9P_ADDRESS";
  constructor(message: string) {
    super(message);
    this.name = "AddressError";
  }
}

function parsePort(text: string, whole: string): number {
  const named = SERVICES[text];
  if (named !== undefined) return named;
  if (!/^\d{1,5}$/.test(text)) {
    throw new AddressError(`bad port "${text}" in address "${whole}": expected a number 0-65535 or 9fs`);
  }
  const port = Number(text);
  if (port > 65535) throw new AddressError(`bad port ${port} in address "${whole}": ports go up to 65535`);
  return port;
}

function checkHost(written: string, whole: string): string {
  // An IPv6 address may keep its brackets in a dial string: `tcp![::1]!564`.
  const host = /^\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.%\w]*\]$/.test(written) ? written.slice(1, -1) : written;
  if (host === "") throw new AddressError(`missing host in address "${whole}"`);
  if (/[\s/![\]]/.test(host)) throw new AddressError(`bad host "${host}" in address "${whole}"`);
  return host;
}

/**
 * Parses `tcp!host!port`, `net!host!port`, `unix!/path`, `host!port`, `host:port`, `[::1]:port`,
 * a bare `host` (then `defaultPort`), or a path starting with `/` (a Unix socket). An IPv6 host in
 * a dial string may be written with or without brackets (`tcp![::1]!564`, `::1!564`).
 * Dial strings are read from the right: the text after the last `!` is the port.
 *
 * @example parseAddress("tcp!10.0.0.5!564") // { network: "tcp", host: "10.0.0.5", port: 564 }
 */
export function parseAddress(addr: string, defaultPort: number = DEFAULT_9P_PORT): Address {
  const whole = addr;
  const text = addr.trim();
  if (text === "") throw new AddressError("empty address");
  if (text.startsWith("/")) return { network: "unix", path: text };
  if (text.includes("!")) {
    const parts = text.split("!");
    const net = parts[0] ?? "";
    if (net === "unix") {
      const path = parts.slice(1).join("!");
      if (path === "") throw new AddressError(`missing socket path in address "${whole}"`);
      return { network: "unix", path };
    }
    if (net === "tcp" || net === "net") {
      if (parts.length === 2)
        return { network: "tcp", host: checkHost(parts[1] ?? "", whole), port: defaultPort };
      if (parts.length === 3) {
        return {
          network: "tcp",
          host: checkHost(parts[1] ?? "", whole),
          port: parsePort(parts[2] ?? "", whole),
        };
      }
      throw new AddressError(`bad dial string "${whole}": expected ${net}!host!port`);
    }
    if (parts.length === 2) {
      return { network: "tcp", host: checkHost(net, whole), port: parsePort(parts[1] ?? "", whole) };
    }
    throw new AddressError(`bad dial string "${whole}": unknown network "${net}" (use tcp, net or unix)`);
  }
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) throw new AddressError(`missing "]" in address "${whole}"`);
    const host = checkHost(text.slice(1, close), whole);
    const rest = text.slice(close + 1);
    if (rest === "") return { network: "tcp", host, port: defaultPort };
    if (!rest.startsWith(":")) throw new AddressError(`unexpected "${rest}" after "]" in address "${whole}"`);
    return { network: "tcp", host, port: parsePort(rest.slice(1), whole) };
  }
  const colons = text.split(":").length - 1;
  if (colons === 1) {
    const i = text.indexOf(":");
    return {
      network: "tcp",
      host: checkHost(text.slice(0, i), whole),
      port: parsePort(text.slice(i + 1), whole),
    };
  }
  // Zero colons: a bare host. Several: a bare IPv6 address without brackets.
  return { network: "tcp", host: checkHost(text, whole), port: defaultPort };
}

/** Prints an address as a Plan 9 dial string: `tcp!host!port` or `unix!/path`. */
export function formatAddress(addr: Address): string {
  return addr.network === "unix" ? `unix!${addr.path}` : `tcp!${addr.host}!${addr.port}`;
}
