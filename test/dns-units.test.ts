// Pure parts of the DNS stage: the strict query parser and the query sent upstream, the book
// of handed-out addresses with per-name eviction, who owns a host-map element, the feeder's nft
// script, flow events.
import { isIP } from 'node:net';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { HandedOutBook } from '../src/dns/handed-out.js';
import { AnswerParseError, answeredAddresses } from '../src/dns/answers.js';
import { flowEvents, nameAddress } from '../src/dns/flows.js';
import { parseHostMembers } from '../src/dns/flow-report.js';
import { RCODE, buildReply, buildUpstreamQuery, matchResponse, parseQuery } from '../src/dns/wire.js';
import { HostHolds } from '../src/nft/host-holds.js';
import { compareEndpointIds, counterName, kernelEndpoints, REJECT_COUNTER } from '../src/nft/names.js';
import { feederScript, type HostElement } from '../src/nft/set-feeder.js';
import { loadPolicyText } from '../src/policy/load.js';

describe('wire', () => {
  it('parses one question with EDNS and rebuilds the upstream query from the question alone', () => {
    const message = dnsPacket.encode({
      type: 'query',
      id: 77,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: 'AAAA', name: 'Api.Example.com' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK, options: [{ code: 10, data: Buffer.alloc(8, 1) }] } as dnsPacket.Answer],
    });
    const parsed = parseQuery(message);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.query).toMatchObject({ id: 77, name: 'Api.Example.com', qtype: 28, qclass: 1, edns: { udpPayload: 1232, dnssecOk: true } });
    const upstream = dnsPacket.decode(buildUpstreamQuery(parsed.query, 999, 'udp'));
    expect(upstream).toMatchObject({ id: 999, questions: [{ name: 'Api.Example.com', type: 'AAAA' }] });
    const opt = (upstream.additionals ?? [])[0] as unknown as { udpPayloadSize: number; options: unknown[]; flags: number };
    expect(opt.udpPayloadSize).toBe(1232);
    expect(opt.options).toEqual([]);
    expect(opt.flags & dnsPacket.DNSSEC_OK).toBe(dnsPacket.DNSSEC_OK);
  });

  it('clamps the EDNS payload size offered upstream', () => {
    const tiny = parseQuery(dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'a.example' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 100 } as dnsPacket.Answer] }));
    if (!tiny.ok) throw new Error('parse');
    const sent = dnsPacket.decode(buildUpstreamQuery(tiny.query, 1, 'udp'));
    expect((sent.additionals![0] as unknown as { udpPayloadSize: number }).udpPayloadSize).toBe(512);
  });

  it('refuses what is not one plain question, saying why', () => {
    const two = dnsPacket.encode({ type: 'query', id: 5, questions: [{ type: 'A', name: 'a.example' }, { type: 'A', name: 'b.example' }] });
    const r = parseQuery(two);
    expect(r).toMatchObject({ ok: false, reply: { id: 5, rcode: RCODE.FORMERR } });
    expect(parseQuery(Buffer.alloc(5))).toMatchObject({ ok: false, reply: null });
    const response = dnsPacket.encode({ type: 'response', id: 5, questions: [{ type: 'A', name: 'a.example' }] });
    expect(parseQuery(response)).toMatchObject({ ok: false, reply: null });
    // A name longer than 255 bytes on the wire.
    const long = Buffer.concat([Buffer.from([0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...Array.from({ length: 5 }, () => Buffer.from([63, ...Buffer.alloc(63, 97)])), Buffer.from([0, 0, 1, 0, 1])]);
    expect(parseQuery(long)).toMatchObject({ ok: false, reply: { rcode: RCODE.FORMERR } });
  });

  it('builds replies that decode, echoing the question', () => {
    const parsed = parseQuery(dnsPacket.encode({ type: 'query', id: 3, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'TXT', name: 'x.example' }] }));
    if (!parsed.ok) throw new Error('parse');
    const reply = dnsPacket.decode(buildReply(3, parsed.query.flags, RCODE.REFUSED, parsed.query.question));
    expect(reply).toMatchObject({ id: 3, type: 'response', rcode: 'REFUSED', questions: [{ name: 'x.example', type: 'TXT' }] });
    expect(reply.flags! & dnsPacket.RECURSION_DESIRED).toBe(dnsPacket.RECURSION_DESIRED);
  });

  it('accepts an upstream response only for the same question (case-insensitive name)', () => {
    const parsed = parseQuery(dnsPacket.encode({ type: 'query', id: 3, questions: [{ type: 'A', name: 'x.example' }] }));
    if (!parsed.ok) throw new Error('parse');
    const answer = (name: string, type: 'A' | 'HTTPS' = 'A') => dnsPacket.encode({ type: 'response', id: 3, questions: [{ type, name }], answers: [] });
    expect(matchResponse(answer('X.EXAMPLE'), parsed.query.question)).toMatchObject({ rcode: 0 });
    expect(matchResponse(answer('y.example'), parsed.query.question)).toBeNull();
    expect(matchResponse(answer('x.example', 'HTTPS'), parsed.query.question)).toBeNull();
  });
});

describe('HandedOutBook', () => {
  const elementsFor = (address: string): HostElement[] => [{ endpoint: '0_0', address, port: 443 }];

  it('keeps at most N addresses per name and releases the oldest', () => {
    const book = new HandedOutBook(2);
    expect(book.record('a.example', ['203.0.113.1'], elementsFor).release).toEqual([]);
    expect(book.record('a.example', ['203.0.113.2'], elementsFor).release).toEqual([]);
    const third = book.record('a.example', ['203.0.113.3'], elementsFor);
    expect(third.release).toEqual(elementsFor('203.0.113.1'));
    expect(book.addressesOf('a.example')).toEqual(['203.0.113.2', '203.0.113.3']);
    expect(book.namesOf('203.0.113.1')).toEqual([]);
    // Answering an address again makes it the newest.
    book.record('a.example', ['203.0.113.2'], elementsFor);
    expect(book.record('a.example', ['203.0.113.4'], elementsFor).release).toEqual(elementsFor('203.0.113.3'));
  });

  it('counts A and AAAA addresses of a name separately', () => {
    const book = new HandedOutBook(1);
    book.record('a.example', ['203.0.113.1'], elementsFor, 4);
    const v6 = (address: string): HostElement[] => [{ endpoint: '0_0', address, port: 443 }];
    expect(book.record('a.example', ['2001:db8::1'], v6, 6).release).toEqual([]);
    expect(book.addressesOf('a.example', 4)).toEqual(['203.0.113.1']);
    expect(book.addressesOf('a.example', 6)).toEqual(['2001:db8::1']);
    expect(book.record('a.example', ['2001:db8::2'], v6, 6).release).toEqual(v6('2001:db8::1'));
  });

  it('keeps only the first N of one long answer', () => {
    const book = new HandedOutBook(2);
    const r = book.record('a.example', ['203.0.113.1', '203.0.113.2', '203.0.113.3'], elementsFor);
    expect(r.kept).toEqual(['203.0.113.1', '203.0.113.2']);
    expect(r.release).toEqual([]);
  });

  it('does not release an element another name still holds', () => {
    const book = new HandedOutBook(1);
    book.record('a.example', ['203.0.113.9'], elementsFor);
    book.record('b.example', ['203.0.113.9'], elementsFor);
    expect(book.namesOf('203.0.113.9')).toEqual(['a.example', 'b.example']);
    expect(book.record('a.example', ['203.0.113.10'], elementsFor).release).toEqual([]);
    expect(book.record('b.example', ['203.0.113.11'], elementsFor).release).toEqual(elementsFor('203.0.113.9'));
  });

  it('forgets the least recently answered name past its size limit', () => {
    const book = new HandedOutBook(4, 2);
    book.record('a.example', ['203.0.113.1'], elementsFor);
    book.record('b.example', ['203.0.113.2'], elementsFor);
    book.record('c.example', ['203.0.113.3'], elementsFor);
    expect(book.namesOf('203.0.113.1')).toEqual([]);
    expect(book.namesOf('203.0.113.3')).toEqual(['c.example']);
  });
});

describe('HostHolds', () => {
  it('orders endpoint ids as the policy does, numerically', () => {
    expect(['10_0', '2_1', '2_0', '2_10', '0_3'].sort(compareEndpointIds)).toEqual(['0_3', '2_0', '2_1', '2_10', '10_0']);
  });

  it('gives a slot to its first holder in policy order, whatever order the holds came in', () => {
    const holds = new HostHolds();
    holds.hold('203.0.113.7|443', '10_0', 5_000);
    holds.hold('203.0.113.7|443', '2_0', 3_000);
    expect(holds.owner('203.0.113.7|443', 1_000)).toBe('2_0');
    expect(holds.lastUntil('203.0.113.7|443', 1_000)).toBe(5_000);
    // The first holder's time runs out: the next one owns it, until its own time runs out.
    expect(holds.owner('203.0.113.7|443', 3_000)).toBe('10_0');
    expect(holds.owner('203.0.113.7|443', 5_000)).toBeNull();
    expect(holds.size).toBe(0);
  });

  it('a released hold passes the slot on; a later hold never shortens an earlier one', () => {
    const holds = new HostHolds();
    holds.hold('s', '1_0', 9_000);
    holds.hold('s', '1_0', 2_000);
    holds.hold('s', '3_0', 4_000);
    holds.release('s', '1_0');
    expect(holds.owner('s', 0)).toBe('3_0');
    expect(holds.lastUntil('s', 0)).toBe(4_000);
    holds.release('s', '3_0');
    expect(holds.owner('s', 0)).toBeNull();
    expect(holds.lastUntil('s', 0)).toBe(0);
  });
});

describe('feederScript', () => {
  it('writes with add, delete, add, removes with add, delete, and carries the verdict the kernel holds', () => {
    const kernel = new Map([['203.0.113.8|443', '0_1']]);
    const script = feederScript(
      [
        { kind: 'set', endpoint: '0_0', address: '203.0.113.7', port: 443, timeoutSeconds: 33 },
        { kind: 'set', endpoint: '1_0', address: '2001:db8::7', port: 443, timeoutSeconds: 5 },
        { kind: 'remove', endpoint: '0_0', address: '203.0.113.8', port: 443 },
        // A second write of a slot in the same script: its placeholder carries the first one's owner.
        { kind: 'set', endpoint: '0_2', address: '203.0.113.7', port: 443, timeoutSeconds: 9 },
      ],
      (address, port) => kernel.get(`${address}|${port}`),
    );
    expect(script).toBe(
      [
        'add element inet portcullis hosts4 { 203.0.113.7 . 443 timeout 1s : "allow_0_0" }',
        'delete element inet portcullis hosts4 { 203.0.113.7 . 443 }',
        'add element inet portcullis hosts4 { 203.0.113.7 . 443 timeout 33s : "allow_0_0" }',
        'add element inet portcullis hosts6 { 2001:db8::7 . 443 timeout 1s : "allow_1_0" }',
        'delete element inet portcullis hosts6 { 2001:db8::7 . 443 }',
        'add element inet portcullis hosts6 { 2001:db8::7 . 443 timeout 5s : "allow_1_0" }',
        'add element inet portcullis hosts4 { 203.0.113.8 . 443 timeout 1s : "allow_0_1" }',
        'delete element inet portcullis hosts4 { 203.0.113.8 . 443 }',
        'add element inet portcullis hosts4 { 203.0.113.7 . 443 timeout 1s : "allow_0_0" }',
        'delete element inet portcullis hosts4 { 203.0.113.7 . 443 }',
        'add element inet portcullis hosts4 { 203.0.113.7 . 443 timeout 9s : "allow_0_2" }',
        '',
      ].join('\n'),
    );
  });

  it('refuses anything that is not an endpoint id, an address and a port', () => {
    expect(() => feederScript([{ kind: 'remove', endpoint: '0_0 }; flush ruleset', address: '1.2.3.4', port: 1 }])).toThrow(/not an endpoint id/);
    expect(() => feederScript([{ kind: 'remove', endpoint: '0_0', address: '1.2.3.4 }', port: 1 }])).toThrow(/not an IP address/);
    expect(() => feederScript([{ kind: 'remove', endpoint: '0_0', address: '1.2.3.4', port: 70000 }])).toThrow(/not a port/);
  });
});

describe('flowEvents', () => {
  const loaded = loadPolicyText(
    `version: 1
network_policies:
  web:
    endpoints:
      - { host: "*.example.com", port: 443 }
      - { allowed_ips: ["198.51.100.0/24"], port: 5432 }
`,
    'flows.yaml',
  );
  const kes = kernelEndpoints(loaded.policies);
  const [host, cidr] = [kes[0]!, kes[1]!];
  const names = (address: string): string | undefined => (address === '203.0.113.7' ? 'api.example.com' : undefined);

  it('names handed-out addresses, leaves the rest bare, and skips silent counters', () => {
    const members = new Map([
      [host.id, [{ address: '203.0.113.7', port: 443 }, { address: '203.0.113.8', port: 443 }, { address: '2001:db8::9', port: 443 }]],
    ]);
    const events = flowEvents(
      [
        { name: counterName(host.id), comment: 'web/0', packets: 12, bytes: 3400 },
        { name: counterName(cidr.id), comment: 'web/1', packets: 0, bytes: 0 },
        { name: REJECT_COUNTER, comment: '', packets: 3, bytes: 180 },
        { name: 'allow_9_9', comment: 'gone/0', packets: 1, bytes: 60 },
      ],
      kes,
      names,
      members,
      '2026-01-01T00:00:00.000Z',
    );
    expect(events).toEqual([
      expect.objectContaining({
        kind: 'flow',
        time: '2026-01-01T00:00:00.000Z',
        allow: true,
        decision: 'allow',
        policy: 'web',
        endpoint: 'web/0',
        host: '*.example.com',
        port: 443,
        packets: 12,
        bytes: 3400,
        destinations: ['api.example.com (203.0.113.7):443', '203.0.113.8:443', '[2001:db8::9]:443'],
      }),
      expect.objectContaining({ kind: 'flow', allow: false, decision: 'deny', policy: null, packets: 3, bytes: 180 }),
    ]);
    expect(nameAddress('203.0.113.8', names)).toBe('203.0.113.8');
  });

  it('reads the host maps from nft JSON, per owning endpoint', () => {
    const element = (address: string, port: number, counter: string, wrapped: boolean): unknown[] => [
      wrapped ? { elem: { val: { concat: [address, port] }, timeout: 30, expires: 29 } } : { concat: [address, port] },
      counter,
    ];
    const json = JSON.stringify({
      nftables: [
        { map: { family: 'inet', table: 'portcullis', name: 'hosts4', map: 'counter', elem: [element('203.0.113.7', 443, 'allow_0_0', true), element('203.0.113.8', 443, 'allow_1_2', false)] } },
        { map: { family: 'inet', table: 'portcullis', name: 'hosts6', map: 'counter', elem: [element('2001:db8::9', 443, 'allow_0_0', true)] } },
        // Other maps, other tables and counters that are no endpoint's are not destinations.
        { map: { family: 'inet', table: 'portcullis', name: 'direct4', map: 'counter', elem: [element('198.51.100.0', 443, 'allow_0_1', false)] } },
        { map: { family: 'ip', table: 'other', name: 'hosts4', map: 'counter', elem: [element('192.0.2.1', 1, 'allow_0_0', false)] } },
        { map: { family: 'inet', table: 'portcullis', name: 'hosts4', map: 'counter', elem: [element('192.0.2.2', 1, 'allow_proxy', false)] } },
      ],
    });
    expect(parseHostMembers(json)).toEqual(
      new Map([
        ['0_0', [{ address: '203.0.113.7', port: 443 }, { address: '2001:db8::9', port: 443 }]],
        ['1_2', [{ address: '203.0.113.8', port: 443 }]],
      ]),
    );
  });
});

describe('answeredAddresses', () => {
  const response = (answers: dnsPacket.Answer[]): Buffer =>
    dnsPacket.encode({ type: 'response', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'www.example.com' }], answers });

  it('reads A and AAAA of the answer section behind a CNAME chain, in canonical form', () => {
    const message = response([
      { type: 'CNAME', name: 'www.example.com', ttl: 30, data: 'edge.cdn.example.net' },
      { type: 'A', name: 'edge.cdn.example.net', ttl: 20, data: '203.0.113.7' },
      { type: 'AAAA', name: 'edge.cdn.example.net', ttl: 40, data: '2001:0db8:0000:0000:0000:0000:0000:0007' },
      { type: 'TXT', name: 'edge.cdn.example.net', ttl: 40, data: 'hello' },
    ]);
    expect(answeredAddresses(message)).toEqual([
      { family: 4, address: '203.0.113.7', ttl: 20 },
      { family: 6, address: '2001:db8::7', ttl: 40 },
    ]);
  });

  it('treats a TTL with the top bit set as zero', () => {
    const message = response([{ type: 'A', name: 'www.example.com', ttl: 1, data: '203.0.113.7' }]);
    const at = message.length - 10; // ttl of the last record: type(2) class(2) ttl(4) rdlength(2) rdata(4)
    message.writeUInt32BE(0x80000001, at);
    expect(answeredAddresses(message)).toEqual([{ family: 4, address: '203.0.113.7', ttl: 0 }]);
  });

  it('throws AnswerParseError for every message cut short inside its records', () => {
    const message = response([
      { type: 'CNAME', name: 'www.example.com', ttl: 5, data: 'edge.cdn.example.net' },
      { type: 'A', name: 'edge.cdn.example.net', ttl: 20, data: '203.0.113.7' },
      { type: 'AAAA', name: 'edge.cdn.example.net', ttl: 40, data: '2001:db8::7' },
    ]);
    expect(answeredAddresses(message)).toHaveLength(2);
    for (let cut = 0; cut < message.length; cut++) {
      expect(() => answeredAddresses(message.subarray(0, cut)), `cut at ${cut}`).toThrow(AnswerParseError);
    }
  });

  it('agrees with dns-packet on random answers; a damaged one either parses to well-formed addresses or throws AnswerParseError', () => {
    const outcomes = { parsed: 0, refused: 0 };
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.ipV4().map((ip) => ({ type: 'A' as const, ip })), fc.ipV6().map((ip) => ({ type: 'AAAA' as const, ip }))), { maxLength: 8 }),
        fc.nat(0x7fffffff),
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }),
        (records, ttl, damage) => {
          const message = response(records.map((r) => ({ type: r.type, name: 'www.example.com', ttl, data: r.ip })));
          const expected = (dnsPacket.decode(message).answers ?? []).map((a) => ({
            family: a.type === 'A' ? 4 : 6,
            address: ipaddr.parse(a.data as string).toString(),
            ttl,
          }));
          expect(answeredAddresses(message)).toEqual(expected);
          const damaged = Buffer.from(message);
          for (const [at, value] of damage) damaged[at % damaged.length] = value;
          const input = damaged.subarray(0, damage.length > 0 ? damage[0]![0] % (damaged.length + 1) : damaged.length);
          let answered: ReturnType<typeof answeredAddresses> | undefined;
          try {
            answered = answeredAddresses(input);
          } catch (err) {
            expect(err).toBeInstanceOf(AnswerParseError);
            outcomes.refused++;
            return;
          }
          outcomes.parsed++;
          for (const a of answered) {
            expect(isIP(a.address), a.address).toBe(a.family);
            expect(a.ttl >= 0 && a.ttl <= 0x7fffffff, String(a.ttl)).toBe(true);
          }
        },
      ),
      { numRuns: 500, seed: 42 },
    );
    // Both outcomes were exercised: neither branch passed by never running.
    expect(outcomes.refused).toBeGreaterThan(100);
    expect(outcomes.parsed).toBeGreaterThan(50);
  });
});
