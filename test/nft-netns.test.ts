// The compiled ruleset enforcing real traffic: a client namespace holding the ruleset (as a
// sandbox would) and a server namespace answering on whole documentation ranges, so any
// refusal can only come from the fence (the baseline test shows every tuple connects without it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRuleset, deleteRuleset, nftAvailable, readCounters } from '../src/nft/apply.js';
import { counterName, hostMapName, kernelEndpoints, REJECT_COUNTER } from '../src/nft/names.js';
import { LIVE_SIZE, liveSetName, redirectedSetName } from '../src/nft/live.js';
import { renderRuleset } from '../src/nft/render.js';
import { loadPolicyText, type LoadedPolicy } from '../src/policy/load.js';
import { expectOpen, expectRefused } from './support/fence-probes.js';
import { createLab, type Lab, type Tuple } from '../testdata/nft/lab.mjs';


const PROXY = '203.0.113.80';
const DNS = '203.0.113.53';

let lab: Lab;
let loaded: LoadedPolicy;
let ports: { cidr: number; host: number; wild: number; other: number; proxy: number; dns: number };
const idOf = (policy: string, index: number): string =>
  kernelEndpoints(loaded.policies).find((k) => k.policy === policy && k.index === index)!.id;

/** Waits (bounded) until a host map holds no element (or none naming `address`), i.e. its timeout has passed. */
async function waitUntilEmpty(map: string, address?: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const text = await lab.nft(['list', 'map', 'inet', 'portcullis', map]);
    if (address === undefined ? !text.includes('elements') : !text.includes(`${address} . `)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${map} still holds ${address ?? 'elements'} after 20 s`);
}

/** Puts `address . port` into its family's host map, counted on an endpoint's counter. */
async function addHostElement(address: string, port: number, id: string, timeout: string): Promise<void> {
  const map = hostMapName(address.includes(':') ? 6 : 4);
  await lab.nft(['add', 'element', 'inet', 'portcullis', map, `{ ${address} . ${port} timeout ${timeout} : "${counterName(id)}" }`]);
}

/** Runs `body` with the IPv4 live set filled to its bound (destinations nobody dials, 100.64.0.0/10); empties it after. */
async function withLiveSetFull(body: () => Promise<void>): Promise<void> {
  const live = liveSetName(4);
  const filler = Array.from({ length: LIVE_SIZE }, (_, i) => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255} . 9`);
  await lab.nft(['flush', 'set', 'inet', 'portcullis', live]);
  await lab.nft(['-f', '-'], `add element inet portcullis ${live} { ${filler.join(', ')} }\n`);
  try {
    await body();
  } finally {
    await lab.nft(['flush', 'set', 'inet', 'portcullis', live]);
  }
}

const refusedTuples = (): Tuple[] => [
  { address: '198.51.100.128', port: ports.cidr }, // outside the allowed /25
  { address: '198.51.100.5', port: ports.other }, // allowed address, other port
  { address: '203.0.113.9', port: ports.cidr }, // only a policy with binaries allows it
  { address: '2001:db8:5::9', port: ports.cidr }, // outside the allowed IPv6 /64
  { address: '198.51.100.200', port: ports.host }, // hostname endpoint, map still empty
  { address: '2001:db8:5::200', port: ports.host },
  { address: PROXY, port: ports.dns }, // the proxy's address, another port
  { address: DNS, port: ports.proxy },
];

beforeAll(async () => {
  const available = await nftAvailable();
  if (!available.ok) throw new Error(available.why);
  lab = await createLab({ listeners: 6 });
  const [cidr, host, wild, other, proxy, dns] = lab.tcpPorts as [number, number, number, number, number, number];
  ports = { cidr, host, wild, other, proxy, dns };
  expect(lab.udpPort).toBe(dns);
  loaded = loadPolicyText(
    `version: 1
network_policies:
  any:
    endpoints:
      - allowed_ips: ["198.51.100.0/25", "2001:db8:5:1::/64"]
        port: ${cidr}
      - host: svc.example.test
        port: ${host}
      - host: "*.wild.example.test"
        port: ${wild}
  tools:
    endpoints:
      - allowed_ips: ["203.0.113.0/24"]
        port: ${cidr}
    binaries:
      - path: /usr/bin/ssh
`,
    'netns.yaml',
  );
});

afterAll(async () => {
  await lab?.close();
});

describe('nft fence in a network namespace', () => {
  it('without the ruleset every test tuple connects (refusals below come from the fence)', async () => {
    await expectOpen(lab, refusedTuples());
  });

  it('applies atomically and idempotently', async () => {
    const script = renderRuleset(loaded.policies, { proxy: { host: PROXY, port: ports.proxy }, dns: { host: DNS, port: ports.dns } });
    await applyRuleset(script, { netns: lab.cli });
    await applyRuleset(script, { netns: lab.cli });
    const tables = await lab.nft(['list', 'tables']);
    expect(tables.trim()).toBe('table inet portcullis');
  });

  it('allowed CIDR endpoints are reachable directly, IPv4 and IPv6', async () => {
    await expectOpen(lab, [
      { address: '198.51.100.5', port: ports.cidr },
      { address: '198.51.100.127', port: ports.cidr },
      { address: '2001:db8:5:1::9', port: ports.cidr },
    ]);
  });

  it('every other address and port is refused at once, not left hanging', async () => {
    await expectRefused(lab, refusedTuples());
  });

  it('the proxy and the DNS proxy are reachable (DNS over UDP and TCP), nothing else there', async () => {
    await expectOpen(lab, [
      { address: PROXY, port: ports.proxy },
      { address: DNS, port: ports.dns },
      { address: DNS, port: ports.dns, udp: true },
    ]);
    await expectRefused(lab, [
      { address: PROXY, port: ports.dns, udp: true, connected: true },
      { address: '198.51.100.5', port: ports.dns, udp: true, connected: true },
    ]);
  });

  for (const [family, address] of [
    [4, '198.51.100.200'],
    [6, '2001:db8:5::200'],
  ] as const) {
    it(`IPv${family} hostname endpoint: reachable while its host map holds the address; established connections survive expiry`, async () => {
      await expectRefused(lab, [{ address, port: ports.host }]);
      await addHostElement(address, ports.host, idOf('any', 1), '3s');
      await expectOpen(lab, [{ address, port: ports.host }]);
      // Only the named port of the element is opened.
      await expectRefused(lab, [{ address, port: ports.other }]);
      const session = await lab.session(address, ports.host);
      try {
        expect(await session.next()).toBe('connected');
        expect(await session.ping()).toBe('pong');
        await waitUntilEmpty(hostMapName(family));
        // The live set still holds the address (the session keeps it in use), yet a new
        // connection needs the host map: it is refused; the established one goes on.
        expect(await lab.nft(['list', 'set', 'inet', 'portcullis', liveSetName(family)])).toContain(`${address} . ${ports.host}`);
        await expectRefused(lab, [{ address, port: ports.host }]);
        expect(await session.ping()).toBe('pong');
      } finally {
        session.close();
      }
    });
  }

  it('with the live set full, a hostname connection falls back to the tracker: still admitted by the host map, still outliving it', async () => {
    await withLiveSetFull(async () => {
      await addHostElement('198.51.100.203', ports.host, idOf('any', 1), '2s');
      const session = await lab.session('198.51.100.203', ports.host);
      try {
        expect(await session.next()).toBe('connected');
        expect(await session.ping()).toBe('pong');
        // Tracked, and not in the (full) live set.
        expect((await lab.conntrack()).filter((e) => e.includes(' ESTABLISHED ') && e.includes('dst=198.51.100.203 '))).toHaveLength(1);
        expect(await lab.nft(['list', 'set', 'inet', 'portcullis', liveSetName(4)])).not.toContain('198.51.100.203');
        await waitUntilEmpty(hostMapName(4), '198.51.100.203');
        await expectRefused(lab, [{ address: '198.51.100.203', port: ports.host }]);
        expect(await session.ping()).toBe('pong');
      } finally {
        session.close();
      }
    });
  });

  it('wildcard hostname endpoints go through the host maps too, counted on their own counter', async () => {
    const counter = async (): Promise<number> => (await readCounters({ netns: lab.cli })).find((c) => c.name === counterName(idOf('any', 2)))!.packets;
    await expectRefused(lab, [{ address: '198.51.100.201', port: ports.wild }]);
    const before = await counter();
    await addHostElement('198.51.100.201', ports.wild, idOf('any', 2), '30s');
    await expectOpen(lab, [{ address: '198.51.100.201', port: ports.wild }]);
    expect(await counter()).toBeGreaterThan(before);
  });

  it('counters count allows and rejects, with policy/endpoint comments', async () => {
    const counters = await readCounters({ netns: lab.cli });
    const byName = new Map(counters.map((c) => [c.name, c]));
    const cidr = byName.get(counterName(idOf('any', 0)))!;
    expect(cidr.comment).toBe('any/0');
    expect(cidr.packets).toBeGreaterThan(0);
    expect(cidr.bytes).toBeGreaterThan(0);
    expect(byName.get(counterName(idOf('any', 1)))!.packets).toBeGreaterThan(0);
    expect(byName.get(REJECT_COUNTER)!.packets).toBeGreaterThanOrEqual(refusedTuples().length);
    expect(byName.get('allow_proxy')!.packets).toBeGreaterThan(0);
    expect(byName.get('allow_dns')!.packets).toBeGreaterThan(0);
  });

  it('direct flows and hostname TCP connections are not tracked, either way; the proxy\'s are', async () => {
    await addHostElement('198.51.100.202', ports.host, idOf('any', 1), '30s');
    const direct = await lab.session('198.51.100.6', ports.cidr);
    const named = await lab.session('198.51.100.202', ports.host);
    const proxied = await lab.session(PROXY, ports.proxy);
    try {
      for (const session of [direct, named, proxied]) {
        expect(await session.next()).toBe('connected');
        expect(await session.ping()).toBe('pong');
      }
      const entries = await lab.conntrack();
      // An entry names both directions (src=client dst=server … src=server dst=client).
      expect(entries.filter((e) => e.includes('198.51.100.6 '))).toEqual([]);
      expect(entries.filter((e) => e.includes('198.51.100.202 '))).toEqual([]);
      // The table is read for real: the tracked connection to the proxy is in it.
      expect(entries.filter((e) => e.includes(' ESTABLISHED ') && e.includes(`dst=${PROXY} `) && e.includes(`dport=${ports.proxy} `))).toHaveLength(1);
    } finally {
      direct.close();
      named.close();
      proxied.close();
    }
  });

  it('a direct endpoint counts every packet the sandbox sends on its flows', async () => {
    const counter = async (): Promise<number> => (await readCounters({ netns: lab.cli })).find((c) => c.name === counterName(idOf('any', 0)))!.packets;
    const session = await lab.session('2001:db8:5:1::7', ports.cidr);
    try {
      expect(await session.next()).toBe('connected');
      const before = await counter();
      for (let i = 0; i < 5; i++) expect(await session.ping()).toBe('pong');
      // At least the five pings (their acknowledgements may ride on them or follow).
      expect((await counter()) - before).toBeGreaterThanOrEqual(5);
    } finally {
      session.close();
    }
  });

  it('deleting the table lifts the fence; reading counters then gives none', async () => {
    await deleteRuleset({ netns: lab.cli });
    await deleteRuleset({ netns: lab.cli });
    expect(await readCounters({ netns: lab.cli })).toEqual([]);
    await expectOpen(lab, [{ address: '203.0.113.9', port: ports.cidr }]);
  });
});

describe('SNI redirect: direct HTTPS lands at the SNI listener unless directly allowed', () => {
  const SNI = '203.0.113.44';
  let sniLoaded: LoadedPolicy;

  beforeAll(async () => {
    sniLoaded = loadPolicyText(
      `version: 1
network_policies:
  web:
    endpoints:
      - allowed_ips: ["198.51.100.0/28"]
        port: 443
      - host: www.example.test
        port: 443
`,
      'sni.yaml',
    );
    // The SNI listener is one of the server's ephemeral ports; nothing listens on 443, so a
    // connection there that is not redirected is refused by the server itself.
    const script = renderRuleset(sniLoaded.policies, { sni: { host: SNI, port: ports.other } });
    await applyRuleset(script, { netns: lab.cli });
  });

  const counter = async (name: string): Promise<number> =>
    (await readCounters({ netns: lab.cli })).find((c) => c.name === name)?.packets ?? -1;

  it('HTTPS to an address no endpoint allows is redirected to the listener', async () => {
    const before = await counter('allow_sni');
    await expectOpen(lab, [
      { address: '203.0.113.77', port: 443 },
      { address: '198.51.100.99', port: 443 },
    ]);
    expect(await counter('allow_sni')).toBeGreaterThan(before);
  });

  it('directly allowed HTTPS goes to its own address (the server refuses: nothing listens on 443 there)', async () => {
    const ep = counterName(kernelEndpoints(sniLoaded.policies)[0]!.id);
    const before = await counter(ep);
    const [result] = await lab.probe([{ address: '198.51.100.5', port: 443 }], { timeoutMs: 1000 });
    expect(result).toBe('ECONNREFUSED');
    expect(await counter(ep)).toBeGreaterThan(before);
  });

  it('HTTPS to an address in the host map is not redirected', async () => {
    const ke = kernelEndpoints(sniLoaded.policies)[1]!;
    await lab.nft(['add', 'element', 'inet', 'portcullis', hostMapName(4), `{ 203.0.113.78 . 443 timeout 60s : "${counterName(ke.id)}" }`]);
    const before = await counter(counterName(ke.id));
    const [result] = await lab.probe([{ address: '203.0.113.78', port: 443 }], { timeoutMs: 1000 });
    expect(result).toBe('ECONNREFUSED');
    expect(await counter(counterName(ke.id))).toBeGreaterThan(before);
  });

  it('a redirected connection stays redirected when its address later joins the live set (a CDN address an allowed name also has)', async () => {
    const ke = kernelEndpoints(sniLoaded.policies)[1]!;
    const session = await lab.session('203.0.113.79', 443);
    try {
      expect(await session.next()).toBe('connected');
      expect(await session.ping()).toBe('pong');
      await lab.nft(['add', 'element', 'inet', 'portcullis', hostMapName(4), `{ 203.0.113.79 . 443 timeout 60s : "${counterName(ke.id)}" }`]);
      // A new connection now goes to the address itself (nothing listens on 443 there) and puts it in the live set.
      const [result] = await lab.probe([{ address: '203.0.113.79', port: 443 }], { timeoutMs: 1000 });
      expect(result).toBe('ECONNREFUSED');
      expect(await lab.nft(['list', 'set', 'inet', 'portcullis', liveSetName(4)])).toContain('203.0.113.79 . 443');
      // The redirected one still reaches the listener: its packets kept their NAT.
      expect(await session.ping()).toBe('pong');
      expect(await session.ping()).toBe('pong');
    } finally {
      session.close();
    }
  });

  it('with the set of redirected connections full, a redirect is refused by the fence, never sent un-NATed', async () => {
    const filler = Array.from({ length: LIVE_SIZE }, (_, i) => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255} . 443 . 9`);
    await lab.nft(['flush', 'set', 'inet', 'portcullis', redirectedSetName(4)]);
    await lab.nft(['-f', '-'], `add element inet portcullis ${redirectedSetName(4)} { ${filler.join(', ')} }\n`);
    try {
      const before = await counter(REJECT_COUNTER);
      await expectRefused(lab, [{ address: '203.0.113.81', port: 443 }]);
      expect(await counter(REJECT_COUNTER)).toBeGreaterThan(before);
    } finally {
      await lab.nft(['flush', 'set', 'inet', 'portcullis', redirectedSetName(4)]);
    }
    await expectOpen(lab, [{ address: '203.0.113.81', port: 443 }]);
  });

  it('IPv6 HTTPS is not redirected to an IPv4 listener: the fence refuses it', async () => {
    const before = await counter(REJECT_COUNTER);
    await expectRefused(lab, [{ address: '2001:db8:5::77', port: 443 }]);
    expect(await counter(REJECT_COUNTER)).toBeGreaterThan(before);
  });

  it('other ports are not redirected', async () => {
    await expectRefused(lab, [{ address: '203.0.113.77', port: ports.cidr }]);
  });

  it('a direct allow of the SNI listener itself leaves the redirect working (its replies stay tracked)', async () => {
    const covering = loadPolicyText(
      `version: 1
network_policies:
  web:
    endpoints:
      - allowed_ips: ["203.0.113.0/26"]
        port: ${ports.other}
`,
      'sni-covered.yaml',
    );
    await applyRuleset(renderRuleset(covering.policies, { sni: { host: SNI, port: ports.other } }), { netns: lab.cli });
    try {
      await expectOpen(lab, [
        { address: '203.0.113.77', port: 443 },
        { address: SNI, port: ports.other },
        { address: '203.0.113.5', port: ports.other },
      ]);
    } finally {
      await applyRuleset(renderRuleset(sniLoaded.policies, { sni: { host: SNI, port: ports.other } }), { netns: lab.cli });
    }
  });
});

describe('direct allows searched by port: a TCP connection is searched at its SYN, then carried by the live set', () => {
  let searchedLoaded: LoadedPolicy;
  // Five prefix lengths: more than the hashed form takes, so the family is searched.
  const BLOCKS = ['198.51.100.0/25', '198.51.100.128/26', '198.51.100.192/27', '198.51.100.224/28', '198.51.100.240/29'];

  beforeAll(async () => {
    searchedLoaded = loadPolicyText(
      ['version: 1', 'network_policies:', '  wide:', '    endpoints:', ...BLOCKS.map((b) => `      - { allowed_ips: ["${b}"], port: ${ports.cidr} }`)].join('\n'),
      'searched.yaml',
    );
    await applyRuleset(renderRuleset(searchedLoaded.policies), { netns: lab.cli });
  });

  const endpointCounter = async (index: number): Promise<number> => {
    const id = kernelEndpoints(searchedLoaded.policies).find((k) => k.index === index)!.id;
    return (await readCounters({ netns: lab.cli })).find((c) => c.name === counterName(id))!.packets;
  };

  it('allows exactly its blocks and port', async () => {
    await expectOpen(lab, [
      { address: '198.51.100.6', port: ports.cidr },
      { address: '198.51.100.247', port: ports.cidr },
    ]);
    await expectRefused(lab, [
      { address: '198.51.100.248', port: ports.cidr }, // past the /29
      { address: '198.51.100.6', port: ports.other },
    ]);
  });

  it('an allowed connection is untracked both ways and counted once, at its SYN', async () => {
    const before = await endpointCounter(0);
    const session = await lab.session('198.51.100.9', ports.cidr);
    try {
      expect(await session.next()).toBe('connected');
      for (let i = 0; i < 5; i++) expect(await session.ping()).toBe('pong');
      expect(await lab.nft(['list', 'set', 'inet', 'portcullis', liveSetName(4)])).toContain(`198.51.100.9 . ${ports.cidr}`);
      expect((await lab.conntrack()).filter((e) => e.includes('198.51.100.9 '))).toEqual([]);
      expect((await endpointCounter(0)) - before).toBe(1);
    } finally {
      session.close();
    }
  });

  it('with the live set full, a connection is tracked instead, and still searched and allowed', async () => {
    await withLiveSetFull(async () => {
      const session = await lab.session('198.51.100.130', ports.cidr);
      try {
        expect(await session.next()).toBe('connected');
        expect(await session.ping()).toBe('pong');
        expect((await lab.conntrack()).filter((e) => e.includes(' ESTABLISHED ') && e.includes('dst=198.51.100.130 '))).toHaveLength(1);
        await expectRefused(lab, [{ address: '198.51.100.248', port: ports.cidr }]);
      } finally {
        session.close();
      }
    });
  });
});
