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
  return {
    async lookup(host) {
      const settle = async (p: Promise<string[]>): Promise<string[] | NodeJS.ErrnoException> => p.catch((err: NodeJS.ErrnoException) => err);
      const [v4, v6] = await Promise.all([settle(resolver.resolve4(host)), settle(resolver.resolve6(host))]);
      const addresses = [...(Array.isArray(v4) ? v4 : []), ...(Array.isArray(v6) ? v6 : [])];
      if (addresses.length > 0) return addresses;
      const errors = [v4, v6].filter((e): e is NodeJS.ErrnoException => !Array.isArray(e));
      const hard = errors.find((e) => !NO_DATA.has(e.code ?? ''));
      if (hard) throw new DnsLookupError(`${host} did not resolve (${hard.code ?? hard.message})`, hard.code === 'ETIMEOUT');
      throw new DnsLookupError(`${host} has no A or AAAA record`, false);
    },
  };
}
