// Resource limits of the proxy, each with a default that suits an agent sandbox.
export interface ProxyLimits {
  /** Largest request head (request line + headers) accepted; larger gets 431. */
  maxHeaderBytes: number;
  /** Time from accept to a complete request head (slowloris); then 408 and close. */
  headerTimeoutMs: number;
  /** Time to establish the upstream TCP connection; then 504. */
  connectTimeoutMs: number;
  /** DNS lookup time for an upstream name; then 504. */
  dnsTimeoutMs: number;
  /** A tunnel with no traffic either way for this long is closed. */
  idleTimeoutMs: number;
  /** Open client connections at most (both listeners together); more are refused. */
  maxConnections: number;
  /** Time and size allowed for a ClientHello on the SNI listener. */
  helloTimeoutMs: number;
  maxHelloBytes: number;
}

export const DEFAULT_LIMITS: ProxyLimits = {
  maxHeaderBytes: 16 * 1024,
  headerTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  dnsTimeoutMs: 5_000,
  idleTimeoutMs: 600_000,
  maxConnections: 8192,
  helloTimeoutMs: 5_000,
  maxHelloBytes: 64 * 1024,
};

export function resolveLimits(partial: Partial<ProxyLimits> = {}): ProxyLimits {
  const out = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(partial) as Array<[keyof ProxyLimits, number | undefined]>) {
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value <= 0) throw new Error(`limit ${key} must be a positive integer, got ${String(value)}`);
    out[key] = value;
  }
  return out;
}
