// The upstream-proxy flags of `proxy` and `run`: `--upstream-proxy http://HOST:PORT`,
// `--upstream-proxy-auth-file FILE` and repeatable `--no-upstream-proxy HOSTPATTERN`.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { readUpstreamProxyAuthFile } from '../proxy/upstream-proxy-auth.js';
import { parseDirectHostPattern, parseUpstreamProxyUrl, type UpstreamProxy } from '../proxy/upstream-proxy.js';

export interface UpstreamProxyFlags {
  /** Parsed after commander, whose errors quote the value (a URL may carry a password). */
  upstreamProxy?: string;
  upstreamProxyAuthFile?: string;
  directHosts?: string[];
}

function collectPattern(text: string, previous: string[] = []): string[] {
  const parsed = parseDirectHostPattern(text);
  if (!parsed.ok) throw new InvalidArgumentError(parsed.message);
  return [...previous, parsed.pattern];
}

export function addUpstreamProxyFlags(command: Command): Command {
  // Commander reads a `--no-` flag as the negation of `--upstream-proxy`; this one is a list of its own.
  const direct = new Option('--no-upstream-proxy <host-pattern>', 'a host (policy host-pattern syntax) dialed directly, not through the upstream proxy; repeatable').argParser(collectPattern);
  direct.negate = false;
  direct.attributeName = () => 'directHosts';
  return command
    .option('--upstream-proxy <http://host:port>', 'send allowed connections on through this HTTP proxy (tunnels by CONNECT, plain HTTP in absolute form)')
    .option('--upstream-proxy-auth-file <file>', 'user:password for the upstream proxy (Basic), one line, in a file only its owner can read')
    .addOption(direct);
}

/** The upstream proxy the flags describe; throws (a usage error) for flags without --upstream-proxy or an unusable credentials file. */
export function upstreamProxyFromFlags(flags: UpstreamProxyFlags): UpstreamProxy | undefined {
  if (!flags.upstreamProxy) {
    if (flags.upstreamProxyAuthFile !== undefined || flags.directHosts !== undefined) {
      throw new InvalidArgumentError('--upstream-proxy-auth-file and --no-upstream-proxy need --upstream-proxy');
    }
    return undefined;
  }
  const url = parseUpstreamProxyUrl(flags.upstreamProxy);
  if (!url.ok) throw new InvalidArgumentError(`--upstream-proxy: ${url.message}`);
  const proxy: UpstreamProxy = { host: url.host, port: url.port, direct: flags.directHosts ?? [] };
  if (flags.upstreamProxyAuthFile !== undefined) proxy.authorization = readUpstreamProxyAuthFile(flags.upstreamProxyAuthFile);
  return proxy;
}
