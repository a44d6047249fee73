// src/net: the one canonical form of an address, the IPv6 forms that carry IPv4, and the
// never-declarable sets, each checked against an oracle written apart from the code: Node's
// WHATWG URL serialiser for the canonical text, and a byte-level reading of each RFC's layout
// for the never-declarable addresses.
import { isIPv6 } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addressFromBigInt, canonicalAddress, canonicalIpHost, formatAddress, isCanonicalIPv4, parseAddress, parseRange, type IpFamily, type IpRange } from '../src/net/address.js';
import { addressClass, addressFacts, commonAddress, embeddedIPv4s, neverDeclarableClass, neverDeclarableOverlap, rangePattern, unreachableClass } from '../src/net/classes.js';
import { classifyHostLiteral } from '../src/net/ip-literal.js';
import { checkAddresses } from '../src/proxy/ssrf.js';

/** The address as the WHATWG URL standard serialises an IPv6 host (RFC 5952, hex for embedded IPv4). */
function urlCanonical(v6: string): string {
  return new URL(`http://[${v6}]/`).hostname.slice(1, -1);
}

describe('the canonical form', () => {
  it('agrees with the URL serialiser on every IPv6 spelling fast-check makes, and keeps IPv4 dotted', () => {
    fc.assert(
      fc.property(fc.ipV6(), fc.boolean(), (v6, upper) => {
        const text = upper ? v6.toUpperCase() : v6;
        expect(canonicalAddress(text)).toBe(urlCanonical(v6));
      }),
      { numRuns: 3000, seed: 7 },
    );
    fc.assert(
      fc.property(fc.ipV4(), (v4) => {
        expect(canonicalAddress(v4)).toBe(v4);
      }),
      { numRuns: 1000, seed: 7 },
    );
  });

  it('reads ::a.b.c.d as the IPv4-compatible address it is, not as an IPv4-mapped one', () => {
    expect(canonicalAddress('::127.0.0.1')).toBe('::7f00:1');
    expect(canonicalAddress('::7f00:1')).toBe('::7f00:1');
    expect(canonicalAddress('::ffff:127.0.0.1')).toBe('::ffff:7f00:1');
    expect(canonicalAddress('0:0:0:0:0:FFFF:7F00:0001')).toBe('::ffff:7f00:1');
    expect(canonicalIpHost('[::127.0.0.1]')).toBe('::7f00:1');
    // A request host says the same: the proxy dials the address asked for, not 127.0.0.1.
    expect(classifyHostLiteral('[::127.0.0.1]')).toEqual({ kind: 'ip', address: '::7f00:1', family: 6 });
    expect(isIPv6('::127.0.0.1') && urlCanonical('::127.0.0.1')).toBe('::7f00:1');
  });

  it('refuses what is not a standard spelling (Node agrees on every IPv6 case)', () => {
    for (const bad of ['127.1', '0x7f.0.0.1', '010.0.0.1', '2130706433', '1.2.3.4.5', '256.0.0.1', ' 1.2.3.4', '']) {
      expect(canonicalAddress(bad), bad).toBeNull();
    }
    // A zone names a link, not an address: the canonical form has none.
    expect(canonicalAddress('fe80::1%eth0')).toBeNull();
    for (const bad of ['::ffff:010.0.0.1', '::ffff:1.2.3', '1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', '::g', ':::', '1:2:3:4:5:6:7:1.2.3.4']) {
      expect(canonicalAddress(bad), bad).toBeNull();
      expect(isIPv6(bad), bad).toBe(false);
    }
  });

  it('reads CIDRs strictly and gives each block as its first address', () => {
    expect(parseRange('10.1.2.3/8')?.[1]).toBe(8);
    for (const bad of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/x', '10.1/16', '::/-1']) expect(parseRange(bad), bad).toBeNull();
  });
});

describe('the fast paths agree with the parser', () => {
  /** Text near an IPv4 address: digits, dots, a few other characters, lengths around 7–15. */
  const nearIPv4 = fc.array(fc.constantFrom(...'0123456789....:x ab'.split('')), { minLength: 0, maxLength: 18 }).map((cs) => cs.join(''));
  const quads = fc.tuple(fc.nat(300), fc.nat(300), fc.nat(300), fc.nat(300), fc.boolean()).map(([a, b, c, d, zero]) => `${zero ? '0' : ''}${a}.${b}.${c}.${d}`);

  it('isCanonicalIPv4 holds exactly for the text the parser gives back unchanged', () => {
    fc.assert(
      fc.property(fc.oneof(nearIPv4, quads, fc.ipV4(), fc.string()), (text) => {
        const ip = parseAddress(text);
        expect(isCanonicalIPv4(text), JSON.stringify(text)).toBe(ip !== null && ip.kind() === 'ipv4' && formatAddress(ip) === text);
      }),
      { numRuns: 20000, seed: 11 },
    );
    for (const bad of ['1.2.3', '1.2.3.4.', '.1.2.3', '01.2.3.4', '1.2.3.256', '1..2.3', '1.2.3.4 ']) expect(isCanonicalIPv4(bad), bad).toBe(false);
    for (const good of ['0.0.0.0', '255.255.255.255', '10.0.0.1', '100.64.0.1']) expect(isCanonicalIPv4(good), good).toBe(true);
  });

  it('remembered answers are the parser\'s, asked twice and after the memory was emptied', () => {
    const texts = ['::FFFF:127.0.0.1', '2001:DB8::1', '::1', 'fe80::1%eth0', '1::2::3', '10.0.0.1', 'not an address', '169.254.169.254'];
    for (let round = 0; round < 2; round++) {
      for (const text of texts) {
        const ip = parseAddress(text);
        expect(canonicalAddress(text), text).toBe(ip === null ? null : formatAddress(ip));
        const facts = addressFacts(text);
        if (ip === null) expect(facts, text).toBeNull();
        else {
          expect(facts?.sameHost, text).toEqual([formatAddress(ip), ...embeddedIPv4s(ip).map((e) => formatAddress(e.address))]);
          expect(facts?.cls, text).toBe(addressClass(ip));
          expect(facts?.hostScoped, text).toBe(neverDeclarableClass(ip)?.cls ?? null);
        }
      }
      // More distinct addresses than either memory holds: both are emptied on the way.
      for (let i = 0; i < 5000; i++) {
        canonicalAddress(`2001:db8::${i.toString(16)}`);
        addressFacts(`2001:db8::${i.toString(16)}`);
      }
    }
  });

  it('the SSRF check and the kernel\'s fence apply one rule (unreachableClass)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.boolean(), (text, named) => {
        const verdict = checkAddresses([text], new Set(), named);
        const cls = unreachableClass(parseAddress(text)!, named);
        expect(verdict.ok, text).toBe(cls === null);
        if (!verdict.ok) expect(verdict.cls, text).toBe(cls);
      }),
      { numRuns: 5000, seed: 13 },
    );
    expect(unreachableClass(parseAddress('169.254.169.254')!, true)).toBe('link-local');
    expect(unreachableClass(parseAddress('10.0.0.5')!, false)).toBe('private');
    expect(unreachableClass(parseAddress('10.0.0.5')!, true)).toBeNull();
  });
});

describe('IPv6 forms that carry an IPv4 address', () => {
  it('reads the IPv4 address out of each form', () => {
    const of = (text: string) => embeddedIPv4s(parseAddress(text)!).map((e) => `${e.form}=${e.address.toString()}`);
    expect(of('::ffff:7f00:1')).toEqual(['IPv4-mapped=127.0.0.1']);
    expect(of('::7f00:1')).toEqual(['IPv4-compatible=127.0.0.1']);
    expect(of('64:ff9b::a9fe:a9fe')).toEqual(['NAT64=169.254.169.254']);
    expect(of('2002:7f00:1::5')).toEqual(['6to4=127.0.0.1']);
    // Teredo: server in bits 32-63, client inverted in the last 32 bits.
    expect(of('2001:0:4136:e378:8000:63bf:80ff:fffe')).toEqual(['Teredo server=65.54.227.120', 'Teredo client=127.0.0.1']);
    expect(of('64:ff9b:1:7f00:0:100::')).toEqual([
      'local NAT64 /48=127.0.0.1', 'local NAT64 /56=0.0.1.0', 'local NAT64 /64=0.1.0.0', 'local NAT64 /96=0.0.0.0',
    ]);
    expect(of('2a0b:1::1')).toEqual([]);
    expect(of('11.22.33.44')).toEqual([]);
  });
});

// ---- An oracle for "may never be declared", from the RFCs' byte layouts -----------------------

function hostScopedV4(b: number[]): boolean {
  return b[0] === 127 || b[0] === 0 || (b[0] === 169 && b[1] === 254);
}

function bytesOf(value: bigint, length: number): number[] {
  const out: number[] = [];
  for (let i = length - 1; i >= 0; i--) out.push(Number((value >> BigInt(8 * i)) & 0xffn));
  return out;
}

/** Whether an address reaches the host itself or its links, in any form. */
function oracleNeverDeclarable(value: bigint, family: IpFamily): boolean {
  if (family === 4) return hostScopedV4(bytesOf(value, 4));
  const b = bytesOf(value, 16);
  const zero = (from: number, to: number): boolean => b.slice(from, to).every((x) => x === 0);
  if (zero(0, 15) && b[15]! <= 1) return true; // :: and ::1
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return true; // fe80::/10
  const carried: number[][] = [];
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) carried.push(b.slice(12)); // ::ffff:a.b.c.d
  if (zero(0, 12)) carried.push(b.slice(12)); // ::a.b.c.d
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b) {
    if (zero(4, 12)) carried.push(b.slice(12)); // 64:ff9b::/96
    if (b[4] === 0 && b[5] === 1) {
      // 64:ff9b:1::/48 with an RFC 6052 prefix of /48, /56, /64 or /96 (byte 8 is "u").
      carried.push([b[6]!, b[7]!, b[9]!, b[10]!], [b[7]!, b[9]!, b[10]!, b[11]!], b.slice(9, 13), b.slice(12));
    }
  }
  if (b[0] === 0x20 && b[1] === 0x02) carried.push(b.slice(2, 6)); // 6to4
  if (b[0] === 0x20 && b[1] === 0x01 && b[2] === 0 && b[3] === 0) {
    carried.push(b.slice(4, 8), b.slice(12).map((x) => x ^ 0xff)); // Teredo server, client
  }
  return carried.some(hostScopedV4);
}

const TEMPLATES_V6 = ['::/0', '::/96', '::ffff:0:0/96', '64:ff9b::/96', '64:ff9b:1::/48', '2002::/16', '2001::/32', 'fe80::/10', '::/120', '2000::/3', 'fe00::/8'];
const HOST_SCOPED_PROBES = [0x7f000001n, 0n, 0xa9fea9fen, 0x7fffffffn, 0x00ffffffn, 0xa9fe0000n];
/** Where the RFCs put an IPv4 address inside an IPv6 one, counted from the low end. */
const CARRIERS: Array<(v4: bigint) => bigint> = [
  (v4) => v4, // the /96 forms
  (v4) => v4 ^ 0xffffffffn, // Teredo client
  (v4) => v4 << 24n, // local NAT64 /64
  (v4) => v4 << 64n, // Teredo server
  (v4) => v4 << 80n, // 6to4
  (v4) => ((v4 >> 16n) << 64n) | ((v4 & 0xffffn) << 40n), // local NAT64 /48, around the "u" octet
  (v4) => ((v4 >> 24n) << 64n) | ((v4 & 0xffffffn) << 32n), // local NAT64 /56
];

/** Random ranges, biased towards the forms and the host-scoped addresses they may carry. */
const ranges: fc.Arbitrary<IpRange> = fc.oneof(
  fc.tuple(fc.constantFrom(0, 127, 169, 10, 128), fc.bigUintN(32), fc.integer({ min: 0, max: 32 })).map(([first, rest, bits]): IpRange => {
    const value = first === 128 ? rest : (BigInt(first) << 24n) | (rest & 0xffffffn);
    return [addressFromBigInt(value, 4), bits];
  }),
  fc.tuple(fc.constantFrom(...TEMPLATES_V6), fc.bigUintN(128), fc.constantFrom(...HOST_SCOPED_PROBES), fc.integer({ min: 0, max: 128 }), fc.nat(CARRIERS.length - 1))
    .map(([template, noise, v4, bits, carrier]): IpRange => {
      const [base, baseBits] = parseRange(template)!;
      const fixed = ((1n << BigInt(baseBits)) - 1n) << BigInt(128 - baseBits);
      // Two times in three, a host-scoped IPv4 where some form keeps it, noise around it.
      const carry = CARRIERS[carrier]!;
      const rest = noise % 3n === 0n ? noise : carry(v4) | (noise & ~carry(0xffffffffn));
      const value = (rangePattern([base, baseBits]).value & fixed) | (rest & ~fixed & ((1n << 128n) - 1n));
      return [addressFromBigInt(value, 6), bits];
    }),
);

/** Addresses inside a range: its ends, random ones, and the probes laid into its free bits. */
function samples(range: IpRange, noise: bigint[]): bigint[] {
  const { family, value, mask } = rangePattern(range);
  const width = family === 4 ? 32n : 128n;
  const all = (1n << width) - 1n;
  const free = all & ~mask;
  const out = [value, value | free, ...noise.map((n) => value | (n & free))];
  if (family === 6) {
    for (const probe of ['::1', '::', 'fe80::1', 'febf:ffff::1']) out.push(value | (rangePattern([parseAddress(probe)!, 128]).value & free));
    for (const v4 of HOST_SCOPED_PROBES) for (const carry of CARRIERS) out.push(value | (carry(v4) & free));
  } else {
    for (const v4 of HOST_SCOPED_PROBES) out.push(value | (v4 & free));
  }
  return out;
}

describe('never-declarable ranges', () => {
  it('the overlap check agrees with the oracle: a named overlap has a witness inside; no overlap, no sampled address the oracle refuses', () => {
    let overlapping = 0;
    fc.assert(
      fc.property(ranges, fc.array(fc.bigUintN(128), { minLength: 8, maxLength: 8 }), (range, noise) => {
        const family: IpFamily = range[0].kind() === 'ipv4' ? 4 : 6;
        const hit = neverDeclarableOverlap(range);
        const pattern = rangePattern(range);
        if (hit !== null) {
          overlapping++;
          const witness = commonAddress(pattern, hit);
          const w = rangePattern([witness, family === 4 ? 32 : 128]).value;
          expect((w & pattern.mask) === pattern.value, `${range.join('/')} witness ${witness.toString()}`).toBe(true);
          expect(oracleNeverDeclarable(w, family), `${range.join('/')} witness ${witness.toString()} (${hit.text})`).toBe(true);
        } else {
          for (const address of samples(range, noise)) {
            expect(oracleNeverDeclarable(address, family), `${range.join('/')} holds ${addressFromBigInt(address, family).toString()}`).toBe(false);
          }
        }
      }),
      { numRuns: 4000, seed: 13 },
    );
    // Both branches ran often.
    expect(overlapping).toBeGreaterThan(400);
    expect(overlapping).toBeLessThan(3600);
  });

  it('on ranges small enough to walk, overlap is exactly "some address in it is never-declarable"', () => {
    fc.assert(
      fc.property(ranges, fc.integer({ min: 0, max: 8 }), (range, hostBits) => {
        const family: IpFamily = range[0].kind() === 'ipv4' ? 4 : 6;
        const bits = (family === 4 ? 32 : 128) - hostBits;
        const small: IpRange = [range[0], bits];
        const { value } = rangePattern(small);
        let any = false;
        for (let i = 0n; i < 1n << BigInt(hostBits) && !any; i++) any = oracleNeverDeclarable(value | i, family);
        expect(neverDeclarableOverlap(small) !== null, `${small[0].toString()}/${bits}`).toBe(any);
      }),
      { numRuns: 2000, seed: 21 },
    );
  });
});

describe('the SSRF check', () => {
  it("catches an own address however it is spelt: mapped, compatible, NAT64, 6to4", () => {
    const own = new Set(['127.0.0.1', '11.0.113.7']);
    for (const spelling of ['127.0.0.1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::127.0.0.1', '::7f00:1', '64:ff9b::7f00:1']) {
      expect(checkAddresses([spelling], own, true), spelling).toMatchObject({ ok: false, cls: 'proxy-own-address' });
    }
    for (const spelling of ['::ffff:b00:7107', '2002:b00:7107::1', '64:ff9b::b00:7107']) {
      expect(checkAddresses([spelling], own, true), spelling).toMatchObject({ ok: false, cls: 'proxy-own-address' });
    }
    // An own address given mapped is the IPv4 address too.
    expect(checkAddresses(['11.0.113.8'], new Set(['::ffff:b00:7108']), true)).toMatchObject({ ok: false, cls: 'proxy-own-address' });
    expect(checkAddresses(['11.0.113.9'], own, true)).toEqual({ ok: true });
  });

  it('allowed_ips never exempts the host itself, in any form, even if a policy got past the loader', () => {
    for (const [address, cls] of [['::ffff:127.0.0.2', 'loopback'], ['::7f00:2', 'loopback'], ['2002:a9fe:1::', 'link-local'], ['0.0.0.0', 'unspecified'], ['fe80::2', 'link-local']]) {
      expect(checkAddresses([address!], new Set(), true), address).toMatchObject({ ok: false, cls });
    }
    expect(checkAddresses(['::ffff:10.0.0.1', '10.0.0.1'], new Set(), true)).toEqual({ ok: true });
  });
});
