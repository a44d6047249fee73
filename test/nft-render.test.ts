// The nft renderer: golden files (testdata/nft/*.yaml → *.nft; regenerate with UPDATE_GOLDEN=1),
// determinism, the interval cutting, and `nft -c` accepting every golden inside a fresh
// network namespace (nothing touches the host ruleset).
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileNftCommand } from '../src/cli/commands/compile-nft.js';
import { checkRuleset } from '../src/nft/apply.js';
import { parseCounters } from '../src/nft/counters.js';
import { formatMask, formatRange, ownedBlocks, parseRange, type OwnedRange } from '../src/nft/intervals.js';
import { counterName, hostMapName, kernelEndpoints } from '../src/nft/names.js';
import { directElements, MAX_HASHED_LENGTHS, planKernel } from '../src/nft/plan.js';
import { renderRuleset, type RenderOptions } from '../src/nft/render.js';
import { loadPolicyFileSync, loadPolicyText } from '../src/policy/load.js';
import type { Policy } from '../src/policy/types.js';

const DIR = path.resolve(__dirname, '../testdata/nft');
const cases = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

function optionsOf(file: string): RenderOptions {
  const first = readFileSync(file, 'utf8').split('\n')[0] ?? '';
  const match = /^# nft-options: (.*)$/.exec(first);
  if (!match) throw new Error(`${file}: first line must be "# nft-options: {json}"`);
  return JSON.parse(match[1]!) as RenderOptions;
}

/** One policy without binaries whose endpoints are these CIDR blocks, each on these ports. */
function cidrPolicy(blocks: string[], ports: number[]): Policy[] {
  const endpoints = blocks.map((c) => `      - { allowed_ips: ["${c}"], ports: [${ports.join(', ')}] }`);
  return loadPolicyText(['version: 1', 'network_policies:', '  a:', '    endpoints:', ...endpoints].join('\n'), 'cidr.yaml').policies;
}

function render(name: string): string {
  const file = path.join(DIR, name);
  return renderRuleset(loadPolicyFileSync(file).policies, optionsOf(file));
}

describe('golden files', () => {
  it('has cases', () => expect(cases.length).toBeGreaterThanOrEqual(4));

  for (const name of cases) {
    it(`${name} renders to its golden`, () => {
      const golden = path.join(DIR, name.replace(/\.yaml$/, '.nft'));
      const text = render(name);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, text);
      expect(existsSync(golden), `${golden} is missing: run with UPDATE_GOLDEN=1`).toBe(true);
      expect(text).toBe(readFileSync(golden, 'utf8'));
    });
  }
});

describe('nft -c accepts every golden (in a fresh namespace)', () => {
  const ns = `pcnft-${process.pid}-check`;
  beforeAll(() => execFileSync('ip', ['netns', 'add', ns]));
  afterAll(() => execFileSync('ip', ['netns', 'del', ns]));

  for (const name of cases) {
    it(name, async () => {
      const golden = readFileSync(path.join(DIR, name.replace(/\.yaml$/, '.nft')), 'utf8');
      expect(await checkRuleset(golden, { netns: ns })).toEqual({ ok: true });
    });
  }

  it('nft -c refuses a broken script (the check is real)', async () => {
    const broken = render('mixed.yaml').replace('flags timeout', 'flags nonsense');
    const result = await checkRuleset(broken, { netns: ns });
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.error).toMatch(/nonsense|syntax error/);
  });
});

describe('determinism', () => {
  it('same input, same bytes, whatever the order of the policies', () => {
    const loaded = loadPolicyFileSync(path.join(DIR, 'mixed.yaml'));
    const options = optionsOf(path.join(DIR, 'mixed.yaml'));
    const once = renderRuleset(loaded.policies, options);
    expect(renderRuleset([...loaded.policies].reverse(), options)).toBe(once);
    expect(renderRuleset(loaded.policies, options)).toBe(once);
  });
});

describe('what reaches the kernel', () => {
  const policy = loadPolicyText(
    [
      'version: 1',
      'network_policies:',
      '  any:',
      '    endpoints:',
      '      - { allowed_ips: ["198.51.100.0/24"], port: 5432 }',
      // A documentation address: opened only because its allowed_ips names it (see below).
      '      - { host: 203.0.113.9, port: 443, allowed_ips: ["203.0.113.9"] }',
      '      - { host: 203.0.113.10, port: 443, allowed_ips: ["198.51.100.0/24"] }',
      '      - { host: db.example.com, port: 5432, allowed_ips: ["203.0.113.0/24"] }',
      '      - { host: api.example.com, port: 80, protocol: rest, access: read-only }',
      '      - { host: logged.example.com, port: 443, tls: inspect }',
      '  tools:',
      '    endpoints: [{ allowed_ips: ["203.0.113.0/24"], port: 22 }]',
      '    binaries: [{ path: /usr/bin/ssh }]',
    ].join('\n'),
    'inline.yaml',
  );
  const plan = planKernel(policy.policies);
  const keys = directElements(plan.direct[4]).map((e) => `${formatRange(e.range)} . ${e.port} → ${e.id}`);

  it('hostless allowed_ips and IP-literal hosts are direct allows', () => {
    expect(keys).toEqual(['203.0.113.9 . 443 → 0_1', '198.51.100.0/24 . 5432 → 0_0']);
  });
  it('an IP-literal host outside its own allowed_ips allows nothing', () => {
    expect(plan.directIds).not.toContain('0_2');
  });
  it('a hostname with allowed_ips goes through the host maps, not a CIDR allow', () => {
    expect(plan.hosts).toEqual([{ id: '0_3', ports: [5432] }]);
    const text = renderRuleset(policy.policies);
    expect(text).toContain(`map ${hostMapName(4)} {\n\t\ttype ipv4_addr . inet_service : counter\n\t\tflags timeout\n\t}`);
    expect(text).toContain(`map ${hostMapName(6)} {\n\t\ttype ipv6_addr . inet_service : counter\n\t\tflags timeout\n\t}`);
    expect(text).not.toMatch(/203\.0\.113\.0\/24 \. 5432/);
  });
  it('a few lookups per family, however many endpoints', () => {
    const many = loadPolicyText(
      ['version: 1', 'network_policies:', '  many:', '    endpoints:', ...Array.from({ length: 50 }, (_, i) => `      - { host: h${i}.example.com, port: 443 }`)].join('\n'),
      'many.yaml',
    );
    const text = renderRuleset([...policy.policies, ...many.policies]);
    const allow4 = /\tchain allow4 \{\n([^}]*)\t\}/.exec(text)![1];
    expect(allow4).toBe(`\t\tjump direct4\n\t\tcounter name ip daddr . th dport map @${hostMapName(4)} accept\n`);
    const allow6 = /\tchain allow6 \{\n([^}]*)\t\}/.exec(text)![1];
    expect(allow6).toBe(`\t\tcounter name ip6 daddr . th dport map @${hostMapName(6)} accept\n`);
    // Direct allows: one hash map per prefix length, most specific first, keyed by network . port.
    const direct4 = /\tchain direct4 \{\n([^}]*)\t\}/.exec(text)![1];
    expect(direct4).toBe(
      '\t\tcounter name ip daddr . th dport map @direct4_32 accept\n\t\tcounter name ip daddr & 255.255.255.0 . th dport map @direct4_24 accept\n',
    );
    expect(text).toContain(`\tmap direct4_24 {\n\t\ttype ipv4_addr . inet_service : counter\n\t\telements = {\n\t\t\t198.51.100.0 . 5432 : "${counterName('0_0')}"\n\t\t}\n\t}`);
    expect(text).toContain('\tset direct4_ports {\n\t\ttype inet_service\n\t\telements = {\n\t\t\t443,\n\t\t\t5432\n\t\t}\n\t}');
    // No chain per endpoint or per port; a counter per endpoint.
    // direct4, untrack_out4, untrack_in4, live_out4, live_in4, live_out6, live_in6, allow4,
    // allow6, untrack_output, untrack_prerouting, untracked, refuse, output, forward
    expect(text.match(/\tchain /g)).toHaveLength(15);
    expect(text.match(/\tcounter allow_\d+_\d+ \{/g)).toHaveLength(54);
  });
  it('direct flows are left untracked both ways, in the same maps, counted going out; the output chain takes untracked TCP and UDP as they come', () => {
    const text = renderRuleset(policy.policies);
    // Packets of open hostname connections are looked for in the (small) live sets first, then
    // the direct allows', then new hostname connections in the host maps.
    expect(text).toContain(
      '\tchain untrack_output {\n\t\ttype filter hook output priority raw; policy accept;\n' +
        '\t\tmeta nfproto ipv4 tcp flags & syn == 0 jump live_out4\n\t\tmeta nfproto ipv6 tcp flags & syn == 0 jump live_out6\n' +
        '\t\tmeta nfproto ipv4 meta l4proto tcp th dport @direct4_ports jump untrack_out4\n\t\tmeta nfproto ipv4 meta l4proto udp th dport @direct4_ports jump untrack_out4\n' +
        '\t\tmeta nfproto ipv4 tcp flags & (syn | ack) == syn counter name ip daddr . tcp dport map @hosts4 update @live4 { ip daddr . tcp dport } notrack accept\n',
    );
    expect(text).toContain(
      '\tchain untrack_prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n' +
        '\t\tmeta nfproto ipv4 meta l4proto tcp jump live_in4\n\t\tmeta nfproto ipv6 meta l4proto tcp jump live_in6\n' +
        '\t\tmeta nfproto ipv4 meta l4proto tcp th sport @direct4_ports jump untrack_in4\n\t\tmeta nfproto ipv4 meta l4proto udp th sport @direct4_ports jump untrack_in4\n\t}',
    );
    expect(text).toContain(
      '\tchain untrack_out4 {\n\t\tcounter name ip daddr . th dport map @direct4_32 notrack accept\n\t\tcounter name ip daddr & 255.255.255.0 . th dport map @direct4_24 notrack accept\n\t}',
    );
    expect(text).toContain('\tchain untrack_in4 {\n\t\tip saddr . th sport @direct4_32 notrack accept\n\t\tip saddr & 255.255.255.0 . th sport @direct4_24 notrack accept\n\t}');
    // Only the raw output chain leaves TCP and UDP untracked, and only what it found allowed and
    // counted: the output chain takes those as they come; other untracked packets only if they
    // are neighbour discovery or MLD.
    expect(text).toMatch(/\tchain untracked \{\n\t\tmeta l4proto tcp accept\n\t\tmeta l4proto udp accept\n\t\ticmpv6 type \{[^}]*\} accept\n\t\tgoto refuse\n\t\}/);
    expect(text.match(/ notrack/g)?.length).toBe(text.match(/ notrack accept/g)?.length);
    for (const chain of ['live_out4', 'live_out6', 'untrack_out4']) {
      const body = text.slice(text.indexOf(`\tchain ${chain} {`), text.indexOf('\t}', text.indexOf(`\tchain ${chain} {`)));
      for (const rule of body.split('\n').filter((r) => r.includes('notrack'))) expect(rule).toMatch(/ @(live[46]|direct4_(32|24)) /);
    }
    expect(text).toContain('\t\tct state established,related accept\n\t\tct state untracked goto untracked\n');
    // Nothing is untracked without direct allows or hostname endpoints: no raw chains.
    const fenceOnly = renderRuleset(loadPolicyText('version: 1\nnetwork_policies:\n  a:\n    endpoints: [{ host: a.example.com, port: 443 }]\n    binaries: [{ path: /usr/bin/curl }]\n', 'f.yaml').policies);
    expect(fenceOnly).not.toContain('priority raw');
    expect(fenceOnly).not.toContain('notrack');
  });
  it('hostname TCP connections: a SYN needs the host map, the rest of the connection the live set it joined; UDP stays tracked', () => {
    const hostOnly = renderRuleset(loadPolicyText('version: 1\nnetwork_policies:\n  a:\n    endpoints: [{ host: a.example.com, port: 443 }]\n', 'h.yaml').policies);
    expect(hostOnly).not.toContain('@direct4_ports');
    expect(hostOnly).toContain('\tset live4 {\n\t\ttype ipv4_addr . inet_service\n\t\tsize 65536\n\t\tflags dynamic,timeout\n\t\ttimeout 5d\n\t}');
    expect(hostOnly).toContain('\tchain live_out4 {\n\t\tip daddr . tcp dport @live4 update @live4 { ip daddr . tcp dport } notrack accept\n\t}');
    expect(hostOnly).toContain('\tchain live_in6 {\n\t\tip6 saddr . tcp sport @live6 notrack accept\n\t}');
    // A SYN only through the host map (and it joins the live set); anything else only through the live set.
    expect(hostOnly).toContain('\t\tmeta nfproto ipv4 tcp flags & (syn | ack) == syn counter name ip daddr . tcp dport map @hosts4 update @live4 { ip daddr . tcp dport } notrack accept\n');
    expect(hostOnly).toContain('\t\tmeta nfproto ipv4 tcp flags & syn == 0 jump live_out4\n');
    expect(hostOnly).toContain('\t\tmeta nfproto ipv6 tcp flags & syn == 0 jump live_out6\n');
    // Only TCP is left untracked on this path: nothing here names UDP.
    expect(/\tchain (live_out4|live_in4|untrack_output|untrack_prerouting) \{[^}]*udp/.test(hostOnly)).toBe(false);
    // Without an SNI redirect there is nothing to leave to the tracker.
    expect(hostOnly).not.toContain('redirected');
  });
  it('with the SNI redirect, redirected connections and the listener\'s replies stay tracked, whatever the live set holds', () => {
    const text = renderRuleset(loadPolicyText('version: 1\nnetwork_policies:\n  a:\n    endpoints: [{ host: a.example.com, port: 443 }]\n', 'h.yaml').policies, { sni: { host: '192.0.2.1', port: 8443 } });
    expect(text).toContain('\tset redirected4 {\n\t\ttype ipv4_addr . inet_service . inet_service\n');
    expect(text).not.toContain('redirected6');
    // First in the raw chain, before the live set can claim the packet.
    expect(text).toContain(
      '\tchain live_out4 {\n\t\ttcp dport 443 ip daddr . tcp dport . tcp sport @redirected4 update @redirected4 { ip daddr . tcp dport . tcp sport } return\n',
    );
    expect(text).toContain('\tchain live_in4 {\n\t\tip saddr 192.0.2.1 tcp sport 8443 return\n');
    // The redirect notes the connection before its DNAT.
    expect(text).toContain('\t\tmeta nfproto ipv4 tcp dport 443 update @redirected4 { ip daddr . tcp dport . tcp sport } dnat ip to 192.0.2.1:8443\n');
  });
  it(`with more than ${MAX_HASHED_LENGTHS} prefix lengths a family is searched by port, once per flow: a TCP connection at its SYN (then live), UDP tracked`, () => {
    const lengths = ['198.51.100.0/24', '203.0.113.0/25', '203.0.113.128/26', '203.0.113.192/27', '203.0.113.224/28'];
    const many = cidrPolicy(lengths.slice(0, MAX_HASHED_LENGTHS + 1), [443]);
    expect(planKernel(many).direct[4].form).toBe('searched');
    const text = renderRuleset(many, { sni: { host: '192.0.2.1', port: 8443 } });
    expect(text).toContain('\tchain direct4 {\n\t\tth dport vmap @ports4\n\t}');
    expect(text).toContain('\tchain port4_443 {\n\t\tcounter name ip daddr map @direct4_443 accept\n\t}');
    // A SYN is searched in the raw output chain; found, it is counted and joins the live set,
    // which carries the rest of the connection (both ways) untracked.
    expect(text).toContain('\t\tmeta nfproto ipv4 tcp flags & (syn | ack) == syn tcp dport vmap @live_ports4\n');
    expect(text).toContain('\tmap live_ports4 {\n\t\ttype inet_service : verdict\n\t\telements = {\n\t\t\t443 : jump live_port4_443\n');
    expect(text).toContain('\tchain live_port4_443 {\n\t\tcounter name ip daddr map @direct4_443 update @live4 { ip daddr . tcp dport } notrack accept\n\t}');
    expect(text).toContain('\t\tmeta nfproto ipv4 tcp flags & syn == 0 jump live_out4\n');
    expect(text).toContain('\t\tmeta nfproto ipv4 meta l4proto tcp jump live_in4\n');
    // No host maps here, so no host-map rule; nothing searched on the way in, nothing for UDP.
    expect(text).not.toContain('@hosts4');
    expect(/\tchain untrack_(output|prerouting) \{[^}]*(udp|@ports4)/.test(text)).toBe(false);
    // Tracked when the live set is full, so the redirect chain still finds it: directly allowed
    // HTTPS keeps its address.
    expect(text).toContain('\t\tip daddr @direct4_443 accept\n');
    const few = cidrPolicy(lengths.slice(0, MAX_HASHED_LENGTHS), [443]);
    expect(planKernel(few).direct[4].form).toBe('hashed');
    expect(renderRuleset(few, { sni: { host: '192.0.2.1', port: 8443 } })).not.toContain('@direct4_443');
  });
  it('the SNI listener stays tracked when a direct allow covers it (its redirected replies need un-NAT)', () => {
    const covered = renderRuleset(policy.policies, { sni: { host: '198.51.100.44', port: 5432 } });
    expect(covered).toContain('\tchain untrack_out4 {\n\t\tip daddr 198.51.100.44 tcp dport 5432 return\n');
    expect(covered).toContain('\tchain untrack_in4 {\n\t\tip saddr 198.51.100.44 tcp sport 5432 return\n');
    const apart = renderRuleset(policy.policies, { sni: { host: '198.51.100.44', port: 8443 } });
    expect(/\tchain untrack_(out|in)4 \{[^}]*return/.test(apart)).toBe(false);
    // Searched allows: the listener's port chain returns it to the tracker before the search.
    const lengths = ['198.51.100.0/24', '203.0.113.0/25', '203.0.113.128/26', '203.0.113.192/27'];
    const searchedCovered = renderRuleset(cidrPolicy(lengths, [443, 5432]), { sni: { host: '198.51.100.44', port: 5432 } });
    expect(searchedCovered).toContain('\tchain live_port4_5432 {\n\t\tip daddr 198.51.100.44 return\n\t\tcounter name');
    expect(searchedCovered).toContain('\tchain live_port4_443 {\n\t\tcounter name');
  });
  it('rest endpoints, inspected endpoints and policies with binaries stay with the proxy', () => {
    expect(kernelEndpoints(policy.policies).map((k) => k.id)).toEqual(['0_0', '0_1', '0_2', '0_3']);
    expect(renderRuleset(policy.policies)).not.toContain(' . 22 ');
  });
  it('every kernel endpoint has a commented counter, and so has the reject', () => {
    const text = renderRuleset(policy.policies);
    for (const id of ['0_0', '0_1', '0_2', '0_3']) expect(text).toContain(`counter ${counterName(id)} {\n\t\tcomment "any/${id.split('_')[1]}"`);
    expect(text).toMatch(/counter name reject_all\n\t\tmeta l4proto tcp reject with tcp reset\n\t\treject with icmpx admin-prohibited/);
  });
});

describe('IP-literal hosts in special ranges: the kernel opens only what the proxy would dial', () => {
  /** The plan of one policy without binaries holding one endpoint. */
  const planOf = (endpoint: string) =>
    planKernel(loadPolicyText(['version: 1', 'network_policies:', '  a:', '    endpoints:', `      - ${endpoint}`].join('\n'), 'special.yaml').policies);
  const opened = (endpoint: string): string[] => {
    const plan = planOf(endpoint);
    return ([4, 6] as const).flatMap((f) => directElements(plan.direct[f]).map((e) => `${formatRange(e.range)} . ${e.port}`));
  };

  it('cloud metadata (169.254.169.254) stays closed and is reported as withheld', () => {
    const plan = planOf('{ host: 169.254.169.254, port: 80 }');
    expect(opened('{ host: 169.254.169.254, port: 80 }')).toEqual([]);
    expect(plan.directIds).toEqual([]);
    expect(plan.withheld).toEqual([{ id: '0_0', endpoint: 'a/0', address: '169.254.169.254', cls: 'link-local' }]);
    // No policy can name it in allowed_ips: the loader refuses the range.
    expect(() => planOf('{ host: 169.254.169.254, port: 80, allowed_ips: ["169.254.169.254"] }')).toThrow(/link-local/);
  });
  it('loopback in its IPv4-mapped form (::ffff:7f00:1) stays closed', () => {
    expect(opened('{ host: "::ffff:7f00:1", port: 81 }')).toEqual([]);
    expect(planOf('{ host: "::ffff:127.0.0.1", port: 81 }').withheld).toEqual([{ id: '0_0', endpoint: 'a/0', address: '::ffff:7f00:1', cls: 'ipv4-mapped' }]);
  });
  it('a private address (10.0.0.5) stays closed without allowed_ips, and opens where they name it', () => {
    expect(opened('{ host: 10.0.0.5, port: 443 }')).toEqual([]);
    expect(planOf('{ host: 10.0.0.5, port: 443 }').withheld.map((w) => w.cls)).toEqual(['private']);
    expect(opened('{ host: 10.0.0.5, port: 443, allowed_ips: ["10.0.0.0/8"] }')).toEqual(['10.0.0.5 . 443']);
    expect(opened('{ host: 10.0.0.5, port: 443, allowed_ips: ["10.0.0.5"] }')).toEqual(['10.0.0.5 . 443']);
    expect(planOf('{ host: 10.0.0.5, port: 443, allowed_ips: ["10.0.0.0/8"] }').withheld).toEqual([]);
    // allowed_ips that do not cover the literal open nothing (the engine denies it), and withhold nothing.
    expect(opened('{ host: 10.0.0.5, port: 443, allowed_ips: ["10.1.0.0/16"] }')).toEqual([]);
  });
  it('an ordinary public address needs no allowed_ips; a hostless range is named by definition', () => {
    expect(opened('{ host: 11.22.33.44, port: 443 }')).toEqual(['11.22.33.44 . 443']);
    expect(opened('{ host: "2a0b:1::1", port: 443 }')).toEqual(['2a0b:1::1 . 443']);
    expect(opened('{ allowed_ips: ["10.0.0.0/8"], port: 443 }')).toEqual(['10.0.0.0/8 . 443']);
  });
  it('the script says which literal it left closed, and why', () => {
    const text = renderRuleset(loadPolicyText('version: 1\nnetwork_policies:\n  meta:\n    endpoints: [{ host: 169.254.169.254, port: 80 }]\n', 'm.yaml').policies);
    expect(text).toContain('# not opened: 169.254.169.254 (link-local) of meta/0;');
    expect(text).not.toMatch(/169\.254\.169\.254 \. 80/);
  });
});

describe('CIDR blocks', () => {
  it('formats CIDRs, single addresses, odd ranges and masks', () => {
    expect(formatRange(parseRange('198.51.100.0/24'))).toBe('198.51.100.0/24');
    expect(formatRange(parseRange('2001:db8::/32'))).toBe('2001:db8::/32');
    expect(formatRange(parseRange('203.0.113.9'))).toBe('203.0.113.9');
    expect(formatRange({ family: 4, start: 1n, end: 6n })).toBe('0.0.0.1-0.0.0.6');
    expect(formatMask(24, 4)).toBe('255.255.255.0');
    expect(formatMask(0, 4)).toBe('0.0.0.0');
    expect(formatMask(64, 6)).toBe('ffff:ffff:ffff:ffff::');
  });

  it('the most specific block holding an address names the lowest owner of every block that holds it', () => {
    // Blocks of 1 to 64 addresses, aligned, among the first 256 addresses: they nest or are disjoint.
    const block = fc.record({ bits: fc.integer({ min: 26, max: 32 }), at: fc.integer({ min: 0, max: 255 }), owner: fc.integer({ min: 0, max: 5 }) });
    fc.assert(
      fc.property(fc.array(block, { minLength: 1, maxLength: 12 }), (raw) => {
        const input: OwnedRange[] = raw.map((b) => {
          const size = 2 ** (32 - b.bits);
          const start = Math.floor(b.at / size) * size;
          return { family: 4, start: BigInt(start), end: BigInt(start + size - 1), owner: b.owner };
        });
        const out = ownedBlocks(input);
        const key = (r: OwnedRange): string => `${r.start}-${r.end}`;
        expect(new Set(out.map(key)).size).toBe(out.length);
        for (let a = 0; a < 256; a++) {
          const x = BigInt(a);
          const holds = (r: OwnedRange): boolean => r.start <= x && x <= r.end;
          const covering = input.filter(holds).map((r) => r.owner);
          // What the kernel finds: the block with the longest prefix, i.e. the smallest.
          const found = out.filter(holds).sort((p, q) => Number(p.end - p.start - (q.end - q.start)))[0];
          if (covering.length === 0) expect(found).toBeUndefined();
          else expect(found?.owner).toBe(Math.min(...covering));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('compile --target nft', () => {
  const loaded = loadPolicyFileSync(path.join(DIR, 'mixed.yaml'));
  it('parses --proxy and --dns, IPv6 in brackets', () => {
    const text = compileNftCommand(loaded, { proxy: '10.200.0.1:3128', dns: '[fd00::53]:53' });
    expect(text).toContain('ip daddr 10.200.0.1 tcp dport 3128 counter name allow_proxy accept');
    expect(text).toContain('ip6 daddr fd00::53 meta l4proto { tcp, udp } th dport 53 counter name allow_dns accept');
  });
  it('the built CLI prints the golden script; a bad --proxy exits non-zero with the reason', async () => {
    const run = promisify(execFile);
    const { stdout } = await run('node', ['dist/cli/main.js', 'compile', '--policy', path.join(DIR, 'overlap.yaml'), '--target', 'nft']);
    expect(stdout).toBe(readFileSync(path.join(DIR, 'overlap.nft'), 'utf8'));
    const failed = await run('node', ['dist/cli/main.js', 'compile', '--policy', path.join(DIR, 'overlap.yaml'), '--target', 'nft', '--proxy', 'nowhere:1']).then(
      () => null,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed?.code).not.toBe(0);
    expect(failed?.stderr).toMatch(/proxy address "nowhere" must be an IP address/);
  });

  it('refuses a name or a bad port with a clear message', () => {
    expect(() => compileNftCommand(loaded, { proxy: 'proxy.local:3128' })).toThrow(/must be an IP address/);
    expect(() => compileNftCommand(loaded, { dns: '10.0.0.1:99999' })).toThrow(/ADDR:PORT/);
  });
});

describe('counter parsing', () => {
  it('keeps only the portcullis table, sorted by name', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { counter: { family: 'inet', table: 'portcullis', name: 'reject_all', comment: 'x', packets: 3, bytes: 180 } },
        { counter: { family: 'inet', table: 'other', name: 'foreign', packets: 1, bytes: 1 } },
        { counter: { family: 'inet', table: 'portcullis', name: 'allow_0_0', comment: 'p/0', packets: 10, bytes: 900 } },
      ],
    });
    expect(parseCounters(json)).toEqual([
      { name: 'allow_0_0', comment: 'p/0', packets: 10, bytes: 900 },
      { name: 'reject_all', comment: 'x', packets: 3, bytes: 180 },
    ]);
    expect(() => parseCounters('not json')).toThrow(/does not parse/);
  });
});
