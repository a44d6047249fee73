// The simulated internet: a network namespace of its own holding every host's documentation
// address (203.0.113.0/24, 198.51.100.0/24, 2001:db8::/32), reached from the root namespace
// over a veth pair, with HTTPS (:443), HTTP (:80) and echo servers inside it and a DNS server
// on loopback that answers the hosts' names. close() removes all of it; so does process exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createCertificateAuthority, type CertificateAuthority } from './ca.js';
import { startDnsServer, type DnsRecords, type DnsServer } from './dns-server.js';
import { runCommand } from '../netns/command.js';
import { addressLink, allocateLinkAddresses, createVethPair, deleteLink, deleteLinkSync, interfaceName, type LinkAddresses } from '../netns/links.js';
import { createNamespace, deleteNamespace, deleteNamespaceSync, nextCounter } from '../netns/namespaces.js';
import type { ServeConfig } from './serve.js';

export const SIM_NAMESPACE_PREFIX = 'pcsim-';

export interface SimHost {
  v4?: string;
  v6?: string;
}

export interface SimulatedInternetOptions {
  /**
   * Hostname → addresses. An entry with neither v4 nor v6 gets one of each, chosen so that
   * simulated internets of parallel processes never share an address.
   */
  hosts: Record<string, SimHost>;
  ca?: CertificateAuthority;
  /** Extra plain-TCP echo ports on every address. */
  extraPorts?: number[];
}

export interface SimulatedInternet {
  netns: string;
  ca: CertificateAuthority;
  dns: DnsServer;
  /** The hosts with the addresses they actually got. */
  hosts: Record<string, SimHost>;
  /** The root-namespace end of the veth pair and the link's addresses. */
  hostInterface: string;
  link: LinkAddresses;
  close(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;

/** serve.js next to this module, or in dist/ when this module runs from TypeScript source. */
function serveScriptPath(): string {
  const sibling = fileURLToPath(new URL('./serve.js', import.meta.url));
  if (existsSync(sibling)) return sibling;
  const built = fileURLToPath(new URL('../../dist/sim/serve.js', import.meta.url));
  if (existsSync(built)) return built;
  throw new Error('simulated internet: dist/sim/serve.js is missing; run `npm run build` first');
}

/** Destinations already routed in the root namespace (clashes with another simulated internet). */
async function routedDestinations(): Promise<Set<string>> {
  const [v4, v6] = await Promise.all([runCommand('ip', ['-4', 'route', 'show']), runCommand('ip', ['-6', 'route', 'show'])]);
  const out = new Set<string>();
  for (const line of `${v4.stdout}\n${v6.stdout}`.split('\n')) {
    const dest = line.trim().split(/\s+/)[0];
    if (dest) out.add(dest.replace(/\/(32|128)$/, ''));
  }
  return out;
}

/** Fills in addresses for hosts given none: 203.0.113.x / 198.51.100.x and 2001:db8:5133::x. */
async function assignAddresses(hosts: Record<string, SimHost>, attempt: number): Promise<Record<string, SimHost>> {
  const taken = await routedDestinations();
  for (const h of Object.values(hosts)) {
    if (h.v4) taken.add(h.v4);
    if (h.v6) taken.add(h.v6);
  }
  const pool: number[] = [];
  for (let i = 0; i < 508; i++) pool.push(i);
  // Different processes start at different places; a retry after a clash starts at random.
  let cursor = attempt === 0 ? (process.pid * 37) % pool.length : Math.floor(Math.random() * pool.length);
  const nextFree = (): { v4: string; v6: string } => {
    for (let tries = 0; tries < pool.length; tries++) {
      const i = pool[cursor % pool.length] ?? 0;
      cursor++;
      const v4 = i < 254 ? `203.0.113.${i + 1}` : `198.51.100.${i - 254 + 1}`;
      const v6 = `2001:db8:5133::${(i + 1).toString(16)}`;
      if (taken.has(v4) || taken.has(v6)) continue;
      taken.add(v4);
      taken.add(v6);
      return { v4, v6 };
    }
    throw new Error('simulated internet: no free documentation address left');
  };
  const out: Record<string, SimHost> = {};
  for (const [name, h] of Object.entries(hosts)) {
    out[name.toLowerCase()] = h.v4 || h.v6 ? { ...h } : nextFree();
  }
  return out;
}

function waitForReady(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    let stdout = '';
    const timer = setTimeout(() => fail(new Error('simulated internet: servers did not start in time')), READY_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      reject(new Error(`${err.message}${stderr ? `: ${stderr.trim()}` : ''}`));
    };
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('ready\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => fail(new Error(`simulated internet: servers exited with code ${code}`)));
    child.once('error', fail);
  });
}

/** Another simulated internet took an address between our check and our route. */
class AddressClashError extends Error {}

export async function startSimulatedInternet(opts: SimulatedInternetOptions): Promise<SimulatedInternet> {
  const automatic = Object.values(opts.hosts).some((h) => !h.v4 && !h.v6);
  for (let attempt = 0; ; attempt++) {
    try {
      return await startOnce(opts, attempt);
    } catch (err) {
      if (!(err instanceof AddressClashError) || !automatic || attempt >= 4) throw err;
    }
  }
}

async function startOnce(opts: SimulatedInternetOptions, attempt: number): Promise<SimulatedInternet> {
  const ca = opts.ca ?? (await createCertificateAuthority());
  const n = nextCounter();
  const netns = await createNamespace(SIM_NAMESPACE_PREFIX, n);
  const hostInterface = interfaceName('pcs', n, 'h');
  const nsInterface = interfaceName('pcs', n, 'n');
  let child: ChildProcess | undefined;
  let dns: DnsServer | undefined;
  // Deleting the namespace destroys the veth pair, and with it every route through it.
  const onExit = (): void => {
    child?.kill('SIGKILL');
    deleteLinkSync(hostInterface);
    deleteNamespaceSync(netns);
  };
  process.once('exit', onExit);

  try {
    await createVethPair(hostInterface, nsInterface, netns);
    const link = await allocateLinkAddresses('sim', n);
    await addressLink(hostInterface, nsInterface, netns, link);
    await runCommand('ip', ['-n', netns, 'route', 'add', 'default', 'via', link.hostV4]);
    await runCommand('ip', ['-n', netns, '-6', 'route', 'add', 'default', 'via', link.hostV6]);
    // Replies to a sandbox's direct (kernel-allowed) connections come back through here and are
    // forwarded on to the sandbox's veth: IPv4 forwarding for this interface only.
    writeFileSync(`/proc/sys/net/ipv4/conf/${hostInterface}/forwarding`, '1');

    const hosts = await assignAddresses(opts.hosts, attempt);
    const records = await placeHosts(hosts, netns, nsInterface, hostInterface, link);
    const config = await serveConfig(hosts, ca, opts.extraPorts ?? []);
    const spawned = spawn('ip', ['netns', 'exec', netns, process.execPath, serveScriptPath()], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child = spawned;
    spawned.stdin?.write(`${JSON.stringify(config)}\n`);
    await waitForReady(spawned);
    spawned.stdout?.resume();
    spawned.stderr?.resume();

    dns = await startDnsServer({ records });

    const closeAll = async (): Promise<void> => {
      process.off('exit', onExit);
      await dns?.close();
      if (spawned.exitCode === null && spawned.signalCode === null) {
        const exited = new Promise<void>((resolve) => spawned.once('exit', () => resolve()));
        spawned.stdin?.end();
        spawned.kill('SIGTERM');
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 2000))]);
      }
      await deleteLink(hostInterface);
      await deleteNamespace(netns);
    };
    let closing: Promise<void> | undefined;
    return { netns, ca, dns, hosts, hostInterface, link, close: () => (closing ??= closeAll()) };
  } catch (err) {
    process.off('exit', onExit);
    child?.kill('SIGKILL');
    await dns?.close();
    await deleteLink(hostInterface);
    await deleteNamespace(netns);
    throw err;
  }
}

/** Gives each host its addresses inside the namespace and a route to them from the root one. */
async function placeHosts(hosts: Record<string, SimHost>, netns: string, nsInterface: string, hostInterface: string, link: LinkAddresses): Promise<Record<string, DnsRecords>> {
  const records: Record<string, DnsRecords> = {};
  for (const [name, h] of Object.entries(hosts)) {
    records[name] = { A: h.v4 ? [h.v4] : [], AAAA: h.v6 ? [h.v6] : [] };
    if (h.v4) {
      await runCommand('ip', ['-n', netns, 'addr', 'add', `${h.v4}/32`, 'dev', nsInterface]);
      await routeOrExplain(['-4', 'route', 'add', `${h.v4}/32`, 'via', link.nsV4, 'dev', hostInterface], h.v4);
    }
    if (h.v6) {
      await runCommand('ip', ['-n', netns, '-6', 'addr', 'add', `${h.v6}/128`, 'dev', nsInterface, 'nodad']);
      await routeOrExplain(['-6', 'route', 'add', `${h.v6}/128`, 'via', link.nsV6, 'dev', hostInterface], h.v6);
    }
  }
  return records;
}

/** The servers' configuration: a certificate per host (and a default one for every name). */
async function serveConfig(hosts: Record<string, SimHost>, ca: CertificateAuthority, extraPorts: number[]): Promise<ServeConfig> {
  const names = Object.keys(hosts);
  const ips = Object.values(hosts).flatMap((h) => [h.v4, h.v6].filter((a): a is string => Boolean(a)));
  const certs: ServeConfig['certs'] = {};
  for (const [name, h] of Object.entries(hosts)) {
    certs[name] = await ca.issue([name], [h.v4, h.v6].filter((a): a is string => Boolean(a)));
  }
  return { defaultCert: await ca.issue(names.length > 0 ? names : ['sim.invalid'], ips), certs, httpsPort: 443, httpPort: 80, extraPorts };
}

async function routeOrExplain(args: string[], address: string): Promise<void> {
  try {
    await runCommand('ip', args);
  } catch (err) {
    if (/File exists/.test((err as Error).message)) {
      throw new AddressClashError(`simulated internet: ${address} is already routed in this machine (another simulated internet?); pick other addresses or leave them out to get unique ones`);
    }
    throw err;
  }
}
