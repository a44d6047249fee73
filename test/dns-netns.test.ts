// The DNS proxy feeding the kernel: a hostname endpoint is unreachable until the proxy has
// answered for it, reachable right after the answer (the host maps are filled before the answer
// is released), unreachable for new connections once the TTL has run out, while an established
// connection survives. Real nft in a client namespace the test creates, real listeners in a
// server namespace, a real upstream DNS server on loopback. The proxy runs in this process
// (root namespace, loopback) and its feeder targets the client namespace; the queries come
// from here, the connections from inside the client namespace.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRuleset, nftAvailable, readCounters } from '../src/nft/apply.js';
import { counterName, hostMapName, kernelEndpoints } from '../src/nft/names.js';
import { renderRuleset } from '../src/nft/render.js';
import { NftSetFeeder } from '../src/nft/set-feeder.js';
import { loadPolicyText, type LoadedPolicy } from '../src/policy/load.js';
import { startDnsServer, type DnsServer } from '../src/sim/dns-server.js';
import { startDnsProxy, type RunningDnsProxy } from '../src/dns/proxy.js';
import { parseHostMembers, readFlowEvents } from '../src/dns/flow-report.js';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink } from '../src/audit/sink.js';
import { query } from './fixtures/dns/client.js';
import { expectOpen, expectRefused } from './support/fence-probes.js';
import { createLab, type Lab } from '../testdata/nft/lab.mjs';


let lab: Lab;
let upstream: DnsServer;
let proxy: RunningDnsProxy;
let feeder: NftSetFeeder;
let loaded: LoadedPolicy;
let port: number;

const idOf = (policy: string, index: number): string => kernelEndpoints(loaded.policies).find((k) => k.policy === policy && k.index === index)!.id;

/** `address . port` elements the host maps send to an endpoint's chain now, both families. */
async function held(id: string): Promise<string[]> {
  const out: string[] = [];
  for (const family of [4, 6] as const) {
    const json = await lab.nft(['-j', 'list', 'map', 'inet', 'portcullis', hostMapName(family)]);
    for (const m of parseHostMembers(json).get(id) ?? []) out.push(`${m.address} . ${m.port}`);
  }
  return out;
}

/** The endpoint whose chain the host map sends `address . port` to, or undefined. */
async function ownerOf(address: string, p: number): Promise<string | undefined> {
  const json = await lab.nft(['-j', 'list', 'map', 'inet', 'portcullis', hostMapName(address.includes(':') ? 6 : 4)]);
  for (const [id, members] of parseHostMembers(json)) if (members.some((m) => m.address === address && m.port === p)) return id;
  return undefined;
}

/** Waits (bounded) until no host-map element sends `address` to the endpoint, i.e. its timeout has passed. */
async function waitUntilGone(id: string, address: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    if (!(await held(id)).some((e) => e.startsWith(`${address} . `))) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the host maps still send ${address} to ${id} after 30 s`);
}

beforeAll(async () => {
  const available = await nftAvailable();
  if (!available.ok) throw new Error(available.why);
  lab = await createLab({ listeners: 1 });
  port = lab.tcpPorts[0]!;
  loaded = loadPolicyText(
    `version: 1
network_policies:
  api:
    endpoints:
      - host: api.example.com
        port: ${port}
        allowed_ips: ["203.0.113.0/24", "2001:db8:5::/48"]
      - host: "*.cdn.example.com"
        port: ${port}
        allowed_ips: ["203.0.113.0/25"]
      - host: public.example.com
        port: ${port}
  tools:
    binaries:
      - path: /usr/bin/curl
    endpoints:
      - host: tool.example.com
        port: ${port}
`,
    'dns-netns.yaml',
  );
  await applyRuleset(renderRuleset(loaded.policies), { netns: lab.cli });
  upstream = await startDnsServer({
    records: {
      'api.example.com': { A: ['203.0.113.7'], AAAA: ['2001:db8:5::7'], ttl: 2 },
      'img.cdn.example.com': { A: ['203.0.113.20', '203.0.113.200'], ttl: 60 },
      'rot.cdn.example.com': { A: ['203.0.113.40'], ttl: 60 },
      'tool.example.com': { A: ['203.0.113.30'], ttl: 60 },
      // Only the first is an ordinary public address; it goes into the map but is never dialled.
      'public.example.com': { A: ['93.184.216.34', '169.254.169.254', '203.0.113.60', '10.1.2.3'], AAAA: ['::1', 'fd00::1'], ttl: 60 },
    },
  });
  feeder = new NftSetFeeder({ netns: lab.cli });
  proxy = await startDnsProxy({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: upstream.address, port: upstream.port },
    policies: loaded.policies,
    feeder,
    ttlFloorSeconds: 1,
    maxAddressesPerName: 2,
  });
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  await lab?.close();
});

describe('DNS proxy feeding the nft host maps', () => {
  it('a hostname endpoint is unreachable before the answer, reachable after, and only for new connections until its TTL', async () => {
    const v4 = { address: '203.0.113.7', port };
    const v6 = { address: '2001:db8:5::7', port };
    await expectRefused(lab, [v4, v6]);

    const a = await query(proxy.address.port, 'api.example.com', 'A', 'udp');
    expect(a.rcode).toBe('NOERROR');
    expect(a.answers.map((r) => r.data)).toEqual(['203.0.113.7']);
    // No wait: the element was in the map before the answer left the proxy.
    await expectOpen(lab, [v4]);
    await expectRefused(lab, [v6]);

    const aaaa = await query(proxy.address.port, 'api.example.com', 'AAAA', 'tcp');
    expect(aaaa.answers.map((r) => r.data)).toEqual(['2001:db8:5::7']);
    await expectOpen(lab, [v6]);
    expect(proxy.handedOut('203.0.113.7')).toBe('api.example.com');
    expect(proxy.handedOut('2001:db8:5:0::7')).toBe('api.example.com');

    // Asked again just before connecting: on a loaded machine the probes above can outlast the
    // 2 s TTL, and this connection must open while the element is in the map.
    await query(proxy.address.port, 'api.example.com', 'A', 'udp');
    const session = await lab.session(v4.address, v4.port);
    try {
      expect(await session.next()).toBe('connected');
      expect(await session.ping()).toBe('pong');
      await waitUntilGone(idOf('api', 0), '203.0.113.7');
      await waitUntilGone(idOf('api', 0), '2001:db8:5::7');
      await expectRefused(lab, [v4, v6]);
      // The established connection is not cut by the expiry.
      expect(await session.ping()).toBe('pong');
    } finally {
      session.close();
    }

    // Asking again opens it again.
    await query(proxy.address.port, 'api.example.com', 'A');
    await expectOpen(lab, [v4]);
  });

  it('releases the answer only after its addresses are in the map, even when nft is slow', async () => {
    const slowFeeder = new NftSetFeeder({ netns: lab.cli, nft: new URL('./fixtures/dns/slow-nft.sh', import.meta.url).pathname });
    upstream.setRecords('slow.cdn.example.com', { A: ['203.0.113.50'], ttl: 60 });
    const slowProxy = await startDnsProxy({
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: upstream.address, port: upstream.port },
      policies: loaded.policies,
      feeder: slowFeeder,
    });
    try {
      const r = await query(slowProxy.address.port, 'slow.cdn.example.com', 'A');
      expect(r.answers.map((x) => x.data)).toEqual(['203.0.113.50']);
      expect(await held(idOf('api', 1))).toContain(`203.0.113.50 . ${port}`);
    } finally {
      await slowProxy.close();
    }
  });

  it('coalesces concurrent map updates into few nft runs and skips elements that are still fresh', async () => {
    const batchFeeder = new NftSetFeeder({ netns: lab.cli });
    const endpoint = idOf('api', 1);
    const elements = Array.from({ length: 200 }, (_, i) => ({ endpoint, address: `203.0.113.${i % 100}`, port: 20000 + i, timeoutSeconds: 60 }));
    await Promise.all(elements.map((e) => batchFeeder.add([e])));
    expect(batchFeeder.runs).toBeLessThanOrEqual(2);
    const text = await held(endpoint);
    for (const e of elements.slice(0, 20)) expect(text).toContain(`${e.address} . ${e.port}`);
    const before = batchFeeder.runs;
    await Promise.all(elements.map((e) => batchFeeder.add([e])));
    expect(batchFeeder.runs).toBe(before);
    // A longer timeout than the kernel copy has left is written again.
    await batchFeeder.add([{ ...elements[0]!, timeoutSeconds: 600 }]);
    expect(batchFeeder.runs).toBe(before + 1);
    await batchFeeder.remove(elements);
    expect((await held(endpoint)).filter((e) => e.endsWith(' . 20000'))).toEqual([]);
  });

  it('an address two endpoints hold counts on the first in policy order, and passes on when it lets go', async () => {
    const ownFeeder = new NftSetFeeder({ netns: lab.cli });
    const [first, second] = [idOf('api', 1), idOf('api', 2)];
    const address = '203.0.113.70';
    const packets = async (id: string): Promise<number> => (await readCounters({ netns: lab.cli })).find((c) => c.name === counterName(id))!.packets;
    await ownFeeder.add([{ endpoint: second, address, port, timeoutSeconds: 60 }]);
    expect(await ownerOf(address, port)).toBe(second);
    // The first endpoint answers later, for less time: it owns the element, which lives as long as the longest hold.
    await ownFeeder.add([{ endpoint: first, address, port, timeoutSeconds: 20 }]);
    expect(await ownerOf(address, port)).toBe(first);
    expect(await lab.nft(['list', 'map', 'inet', 'portcullis', hostMapName(4)])).toMatch(new RegExp(`203\\.0\\.113\\.70 \\. ${port} timeout 1m`));
    const before = { first: await packets(first), second: await packets(second) };
    await expectOpen(lab, [{ address, port }]);
    expect(await packets(first)).toBeGreaterThan(before.first);
    expect(await packets(second)).toBe(before.second);
    // Answering again for the second endpoint changes nothing: the first still holds it.
    await ownFeeder.add([{ endpoint: second, address, port, timeoutSeconds: 60 }]);
    expect(await ownerOf(address, port)).toBe(first);
    await ownFeeder.remove([{ endpoint: first, address, port }]);
    expect(await ownerOf(address, port)).toBe(second);
    await expectOpen(lab, [{ address, port }]);
    expect(await packets(second)).toBeGreaterThan(before.second);
    await ownFeeder.remove([{ endpoint: second, address, port }]);
    expect(await ownerOf(address, port)).toBeUndefined();
    await expectRefused(lab, [{ address, port }]);
  });

  it('reports nft refusals to the caller, and the proxy answers SERVFAIL rather than an answer it could not open', async () => {
    const wrong = new NftSetFeeder({ netns: lab.cli });
    await expect(wrong.add([{ endpoint: '99_0', address: '203.0.113.1', port: 1, timeoutSeconds: 5 }])).rejects.toThrow(/nft refused/);
    // A policy the loaded ruleset was not rendered from: its endpoint chains do not exist there.
    const newer = loadPolicyText(`version: 1\nnetwork_policies:\n  zzz:\n    endpoints: [{ host: img.cdn.example.com, port: ${port}, allowed_ips: [203.0.113.0/24] }]\n`, 'newer.yaml');
    const p = await startDnsProxy({
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: upstream.address, port: upstream.port },
      policies: [...loaded.policies, ...newer.policies],
      feeder: wrong,
    });
    try {
      expect((await query(p.address.port, 'img.cdn.example.com', 'A')).rcode).toBe('SERVFAIL');
      // Names that feed no host map are unaffected.
      expect((await query(p.address.port, 'tool.example.com', 'A')).rcode).toBe('NOERROR');
    } finally {
      await p.close();
    }
  });

  it('adds only addresses inside the endpoint allowed_ips', async () => {
    const r = await query(proxy.address.port, 'img.cdn.example.com', 'A');
    expect(r.answers.map((x) => x.data)).toEqual(['203.0.113.20', '203.0.113.200']);
    await expectOpen(lab, [{ address: '203.0.113.20', port }]);
    await expectRefused(lab, [{ address: '203.0.113.200', port }]);
  });

  it('never opens special addresses (private, link-local, documentation, loopback) unless allowed_ips names them', async () => {
    const seen: AuditEvent[] = [];
    const sink = openAuditSink(undefined);
    sink.onEvent((e) => seen.push(e));
    const p = await startDnsProxy({
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: upstream.address, port: upstream.port },
      policies: loaded.policies,
      feeder,
      audit: sink,
    });
    try {
      const a = await query(p.address.port, 'public.example.com', 'A');
      expect(a.answers.map((x) => x.data)).toEqual(['93.184.216.34', '169.254.169.254', '203.0.113.60', '10.1.2.3']);
      const aaaa = await query(p.address.port, 'public.example.com', 'AAAA');
      expect(aaaa.answers.map((x) => x.data)).toEqual(['::1', 'fd00::1']);
    } finally {
      await p.close();
    }
    const opened = await held(idOf('api', 2));
    expect(opened).toEqual([`93.184.216.34 . ${port}`]);
    await expectRefused(lab, [{ address: '203.0.113.60', port }]);
    const withheld = seen.filter((e) => e.kind === 'dns' && e.host === 'public.example.com').flatMap((e) => e.withheld as string[]);
    expect(withheld.sort()).toEqual(['10.1.2.3 (private)', '169.254.169.254 (link-local)', '203.0.113.60 (documentation)', '::1 (loopback)', 'fd00::1 (unique-local)']);
  });

  it('forwards a name only a policy with binaries covers, and the kernel keeps it closed', async () => {
    const r = await query(proxy.address.port, 'tool.example.com', 'A');
    expect(r.rcode).toBe('NOERROR');
    expect(r.answers.map((x) => x.data)).toEqual(['203.0.113.30']);
    await expectRefused(lab, [{ address: '203.0.113.30', port }]);
  });

  it('keeps at most N addresses per name: the oldest leaves the map', async () => {
    const endpoint = idOf('api', 1);
    await query(proxy.address.port, 'rot.cdn.example.com', 'A');
    upstream.setRecords('rot.cdn.example.com', { A: ['203.0.113.41'], ttl: 60 });
    await query(proxy.address.port, 'rot.cdn.example.com', 'A');
    await expectOpen(lab, [{ address: '203.0.113.40', port }, { address: '203.0.113.41', port }]);
    upstream.setRecords('rot.cdn.example.com', { A: ['203.0.113.42'], ttl: 60 });
    await query(proxy.address.port, 'rot.cdn.example.com', 'A');
    await feeder.idle();
    const text = (await held(endpoint)).join(', ');
    expect(text).not.toContain('203.0.113.40');
    expect(text).toContain('203.0.113.41');
    expect(text).toContain('203.0.113.42');
    await expectRefused(lab, [{ address: '203.0.113.40', port }]);
    await expectOpen(lab, [{ address: '203.0.113.42', port }]);
    expect(proxy.handedOut('203.0.113.40')).toBeUndefined();
  });

  it('turns the counters into flow events, naming only addresses the proxy handed out', async () => {
    // An element the proxy never handed out (put there directly) must stay a bare address.
    await feeder.add([{ endpoint: idOf('api', 1), address: '203.0.113.99', port, timeoutSeconds: 60 }]);
    await expectOpen(lab, [{ address: '203.0.113.99', port }]);
    const events = await readFlowEvents({ netns: lab.cli, policies: loaded.policies, names: (a) => proxy.handedOut(a) });
    const cdn = events.find((e) => e.endpoint === 'api/1');
    expect(cdn).toMatchObject({ kind: 'flow', allow: true, decision: 'allow', policy: 'api', host: '*.cdn.example.com' });
    expect(cdn!.packets as number).toBeGreaterThan(0);
    expect(cdn!.bytes as number).toBeGreaterThan(0);
    const destinations = cdn!.destinations as string[];
    expect(destinations).toContain(`img.cdn.example.com (203.0.113.20):${port}`);
    expect(destinations).toContain(`rot.cdn.example.com (203.0.113.42):${port}`);
    expect(destinations).toContain(`203.0.113.99:${port}`);
    expect(destinations.join(' ')).not.toContain('(203.0.113.99)');
    const api = events.find((e) => e.endpoint === 'api/0');
    expect(api).toMatchObject({ policy: 'api', host: 'api.example.com', port });
    const reject = events.find((e) => e.counter === 'reject_all');
    expect(reject).toMatchObject({ kind: 'flow', allow: false, decision: 'deny', policy: null });
    expect(reject!.packets as number).toBeGreaterThan(0);
  });
});
