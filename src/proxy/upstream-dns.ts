// Upstream name resolution: one lookup per request (A and AAAA together), against the server
// given with --resolver or the system's resolver. The addresses it returns are the only ones
// the proxy checks and dials.
import dns from 'node:dns';

export interface UpstreamLookup {
  lookup(host: string): Promise<string[]>;
}

export class DnsLookupError extends Error {
  constructor(
    message: string,
    readonly timeout: boolean,
  ) {
    super(message);
  }
}

function serverSpec(server: { host: string; port: number }): string {
  return server.host.includes(':') ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
}

const NO_DATA = new Set(['ENODATA', 'ENOTFOUND', 'NXDOMAIN']);
const MAX_CACHE_SECONDS = 30;
const MAX_CACHE_ENTRIES = 10_000;

export function createUpstreamLookup(server: { host: string; port: number } | undefined, timeoutMs: number): UpstreamLookup {
  if (server === undefined) {
    return {
      async lookup(host) {
        try {
          const answers = await dns.promises.lookup(host, { all: true, verbatim: true });
          return answers.map((a) => a.address);
        } catch (err) {
          throw new DnsLookupError(`${host} did not resolve (${(err as NodeJS.ErrnoException).code ?? 'error'})`, false);
        }
      },
    };
  }
  const resolver = new dns.promises.Resolver({ timeout: Math.max(1, Math.floor(timeoutMs / 2)), tries: 2 });
  resolver.setServers([serverSpec(server)]);
  // Concurrent lookups of one name share a query, and answers are kept for their TTL (capped):
  // a burst of connections to one host costs one DNS round trip. A TTL of 0 is never cached, so
  // every request then sees the answer of its own lookup.
  const inFlight = new Map<string, Promise<string[]>>();
  const cache = new Map<string, { addresses: string[]; expires: number }>();
  const query = async (host: string): Promise<string[]> => {
    type Answer = Array<{ address: string; ttl: number }>;
    const settle = async (p: Promise<Answer>): Promise<Answer | NodeJS.ErrnoException> => p.catch((err: NodeJS.ErrnoException) => err);
    const [v4, v6] = await Promise.all([settle(resolver.resolve4(host, { ttl: true })), settle(resolver.resolve6(host, { ttl: true }))]);
    const answers = [...(Array.isArray(v4) ? v4 : []), ...(Array.isArray(v6) ? v6 : [])];
    if (answers.length > 0) {
      const ttl = Math.min(MAX_CACHE_SECONDS, ...answers.map((a) => a.ttl));
      const addresses = answers.map((a) => a.address);
      if (ttl > 0) {
        if (cache.size >= MAX_CACHE_ENTRIES) cache.clear();
        cache.set(host, { addresses, expires: Date.now() + ttl * 1000 });
      }
      return addresses;
    }
    const errors = [v4, v6].filter((e): e is NodeJS.ErrnoException => !Array.isArray(e));
    const hard = errors.find((e) => !NO_DATA.has(e.code ?? ''));
    if (hard) throw new DnsLookupError(`${host} did not resolve (${hard.code ?? hard.message})`, hard.code === 'ETIMEOUT');
    throw new DnsLookupError(`${host} has no A or AAAA record`, false);
  };
  return {
    lookup(host) {
      const cached = cache.get(host);
      if (cached && cached.expires > Date.now()) return Promise.resolve(cached.addresses);
      let pending = inFlight.get(host);
      if (!pending) {
        pending = query(host).finally(() => inFlight.delete(host));
        inFlight.set(host, pending);
      }
      return pending;
    },
  };
}
