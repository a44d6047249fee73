// The pure parsers of the identity stage against /proc text recorded on a real machine
// (test/fixtures/identity), hand-damaged variants, and generated inputs.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { canonicalAddress, decodeEndpoint, encodeEndpoint } from '../src/identity/proc-net-address.js';
import { parseExeLink } from '../src/identity/process-info.js';
import { parseProcStat } from '../src/identity/process-table.js';
import { socketNeedles } from '../src/identity/socket-lookup.js';
import { parseSocketTable, SocketRowMatcher, TCP_ESTABLISHED, TCP_LISTEN } from '../src/identity/socket-table.js';
import { UnresolvedError } from '../src/identity/unresolved.js';

const fixture = (name: string): string => readFileSync(new URL(`./fixtures/identity/${name}`, import.meta.url), 'utf8');

// Recorded with: v4 listener 127.0.0.1:59273 and its client 127.0.0.1:52188; v6 listener
// [::1]:34149 and client [::1]:36496; dual-stack listener [::]:52803 and an IPv6 socket that
// connected to ::ffff:127.0.0.1 from port 43042.
const TCP = fixture('proc-net-tcp.txt');
const TCP6 = fixture('proc-net-tcp6.txt');

function match(text: string, family: 'tcp' | 'tcp6', client: [string, number], proxy: [string, number] | null, chunk = text.length) {
  const c = canonicalAddress(client[0])!;
  const local = encodeEndpoint(c, client[1], family)!;
  const remote = proxy ? encodeEndpoint(canonicalAddress(proxy[0])!, proxy[1], family) : null;
  const matcher = new SocketRowMatcher(local, remote);
  for (let i = 0; i < text.length; i += chunk) {
    const row = matcher.feed(text.slice(i, i + chunk));
    if (row) return row;
  }
  return matcher.finish();
}

describe('proc-net addresses', () => {
  it('encodes IPv4 as little-endian words and ports in host order', () => {
    expect(encodeEndpoint(canonicalAddress('127.0.0.1')!, 8080, 'tcp')).toBe('0100007F:1F90');
    expect(encodeEndpoint(canonicalAddress('10.1.2.3')!, 443, 'tcp')).toBe('0302010A:01BB');
    expect(encodeEndpoint(canonicalAddress('::1')!, 443, 'tcp')).toBeNull();
  });

  it('encodes IPv6 and IPv4-mapped IPv6 for the tcp6 table', () => {
    expect(encodeEndpoint(canonicalAddress('::1')!, 34149, 'tcp6')).toBe('00000000000000000000000001000000:8565');
    expect(encodeEndpoint(canonicalAddress('::ffff:127.0.0.1')!, 43042, 'tcp6')).toBe('0000000000000000FFFF00000100007F:A822');
    expect(encodeEndpoint(canonicalAddress('2001:db8::1')!, 1, 'tcp6')).toBe('B80D0120000000000000000001000000:0001');
  });

  it('normalises IPv4-mapped addresses, zones and refuses non-addresses', () => {
    expect(canonicalAddress('::ffff:127.0.0.1')!.text).toBe('127.0.0.1');
    expect(canonicalAddress('fe80::1%eth0')!.text).toBe('fe80::1');
    expect(canonicalAddress('localhost')).toBeNull();
    expect(canonicalAddress('127.1')).toBeNull();
    expect(canonicalAddress('')).toBeNull();
  });

  it('reads dotted IPv4 (plain or mapped) like the general parser, and leaves non-canonical spellings to it', () => {
    const viaParser = (text: string) => {
      const parsed = ipaddr.parse(text);
      const v4 = parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address() : parsed;
      return { kind: v4.kind(), bytes: v4.toByteArray(), text: v4.toString() };
    };
    fc.assert(
      fc.property(fc.ipV4(), fc.boolean(), (address, mapped) => {
        const text = mapped ? `::ffff:${address}` : address;
        expect(canonicalAddress(text)).toEqual(viaParser(text));
      }),
      { numRuns: 2_000 },
    );
    for (const odd of ['01.2.3.4', '1.2.3.04', '256.1.1.1', '1.2.3', '1.2.3.4.5', '::ffff:300.1.1.1', '1.2.3.4 ']) {
      expect(canonicalAddress(odd), odd).toBeNull();
    }
  });

  it('decodes what it encodes, for any address and port', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 0, max: 65535 }), (address, port) => {
        const canonical = canonicalAddress(address)!;
        for (const family of ['tcp', 'tcp6'] as const) {
          const encoded = encodeEndpoint(canonical, port, family);
          if (encoded === null) continue;
          expect(decodeEndpoint(encoded)).toEqual({ address: canonical.text, port });
        }
      }),
    );
  });

  it('refuses malformed hex endpoints', () => {
    for (const bad of ['', '0100007F', '0100007F:1F9', '0100007G:1F90', '0100007F:1F90:1', '01000007F:1F90']) {
      expect(decodeEndpoint(bad)).toBeNull();
    }
  });
});

describe('socket table parser', () => {
  it('parses every row of the recorded tcp table, TIME_WAIT rows included', () => {
    const { rows, malformed } = parseSocketTable(TCP);
    expect(malformed).toBe(0);
    expect(rows).toHaveLength(5);
    expect(rows[1]).toEqual({ local: { address: '127.0.0.1', port: 59273 }, remote: { address: '0.0.0.0', port: 0 }, state: TCP_LISTEN, uid: 0, inode: 106552 });
    expect(rows[3]).toEqual({ local: { address: '127.0.0.1', port: 52188 }, remote: { address: '127.0.0.1', port: 59273 }, state: TCP_ESTABLISHED, uid: 0, inode: 106553 });
    expect(rows[4]).toMatchObject({ state: 0x06, inode: 0 });
  });

  it('parses the recorded tcp6 table, mapped addresses as IPv4', () => {
    const { rows, malformed } = parseSocketTable(TCP6);
    expect(malformed).toBe(0);
    expect(rows).toHaveLength(6);
    expect(rows[3]).toMatchObject({ local: { address: '127.0.0.1', port: 43042 }, remote: { address: '127.0.0.1', port: 52803 }, inode: 106559 });
    expect(rows[5]).toMatchObject({ local: { address: '::1', port: 36496 }, remote: { address: '::1', port: 34149 }, inode: 106556 });
  });

  it('skips malformed lines and counts them', () => {
    const { rows, malformed } = parseSocketTable(fixture('proc-net-tcp-malformed.txt'));
    expect(rows.map((r) => r.inode)).toEqual([106554, 4242]);
    expect(rows[1]).toMatchObject({ local: { address: '127.0.0.2', port: 8080 }, uid: 1000 });
    expect(malformed).toBe(6);
  });
});

describe('row matcher', () => {
  it('finds the client row by the full 4-tuple, not the server row of the same connection', () => {
    expect(match(TCP, 'tcp', ['127.0.0.1', 52188], ['127.0.0.1', 59273])?.inode).toBe(106553);
    expect(match(TCP, 'tcp', ['127.0.0.1', 59273], ['127.0.0.1', 52188])?.inode).toBe(106554);
    expect(match(TCP6, 'tcp6', ['::1', 36496], ['::1', 34149])?.inode).toBe(106556);
    expect(match(TCP6, 'tcp6', ['::ffff:127.0.0.1', 43042], ['127.0.0.1', 52803])?.inode).toBe(106559);
  });

  it('needs the whole tuple: a wrong proxy port or a listening row does not match', () => {
    expect(match(TCP, 'tcp', ['127.0.0.1', 52188], ['127.0.0.1', 59274])).toBeNull();
    expect(match(TCP, 'tcp', ['127.0.0.1', 59273], ['0.0.0.0', 0])).toBeNull();
    // TIME_WAIT row: not ESTABLISHED.
    expect(match(TCP, 'tcp', ['127.0.0.1', 0x84e3], ['127.0.0.1', 0xab56])).toBeNull();
  });

  it('matches on the client end alone for redirected connections, and returns the original destination', () => {
    const row = match(TCP, 'tcp', ['127.0.0.1', 52188], null);
    expect(row?.remote).toEqual({ address: '127.0.0.1', port: 59273 });
  });

  it('finds a row split across chunks of any size', () => {
    for (const chunk of [1, 7, 64, 150, 333]) {
      expect(match(TCP6, 'tcp6', ['::1', 36496], ['::1', 34149], chunk)?.inode).toBe(106556);
    }
  });

  it('ignores damaged rows that contain the needle', () => {
    const text = fixture('proc-net-tcp-malformed.txt');
    expect(match(text, 'tcp', ['127.0.0.1', 52188], ['127.0.0.1', 59273])).toBeNull();
    expect(match(text, 'tcp', ['127.0.0.2', 8080], ['127.0.0.1', 52188])?.inode).toBe(4242);
  });

  it('reads tcp then tcp6 for IPv4 clients, tcp6 only for IPv6, and refuses mixed or bad tuples', () => {
    const v4 = socketNeedles({ clientAddress: '::ffff:127.0.0.1', clientPort: 1, proxyAddress: '127.0.0.1', proxyPort: 2 }, false);
    expect(v4.map((n) => n.family)).toEqual(['tcp', 'tcp6']);
    expect(socketNeedles({ clientAddress: '::1', clientPort: 1, proxyAddress: '::1', proxyPort: 2 }, false).map((n) => n.family)).toEqual(['tcp6']);
    expect(() => socketNeedles({ clientAddress: '::1', clientPort: 1, proxyAddress: '127.0.0.1', proxyPort: 2 }, false)).toThrow(UnresolvedError);
    expect(() => socketNeedles({ clientAddress: 'example.com', clientPort: 1, proxyAddress: '127.0.0.1', proxyPort: 2 }, false)).toThrow(UnresolvedError);
    expect(() => socketNeedles({ clientAddress: '127.0.0.1', clientPort: 70000, proxyAddress: '127.0.0.1', proxyPort: 2 }, false)).toThrow(UnresolvedError);
  });
});

describe('process parsers', () => {
  it('reads ppid and start time even when the command name holds parentheses and spaces', () => {
    const stat = '4242 (evil) 1 2 (x) S 17 4242 17 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0';
    expect(parseProcStat(stat)).toEqual({ pid: 4242, comm: 'evil) 1 2 (x', state: 'S', ppid: 17, startTime: 987654 });
    expect(parseProcStat('garbage')).toBeNull();
    expect(parseProcStat('12 (x) S')).toBeNull();
  });

  it('parses its own /proc/self/stat', () => {
    const stat = parseProcStat(readFileSync('/proc/self/stat', 'latin1'));
    expect(stat?.pid).toBe(process.pid);
    expect(stat?.ppid).toBe(process.ppid);
  });

  it('splits " (deleted)" off the executable link', () => {
    expect(parseExeLink('/usr/bin/curl')).toEqual({ path: '/usr/bin/curl', deleted: false });
    expect(parseExeLink('/tmp/x/my tool (deleted)')).toEqual({ path: '/tmp/x/my tool', deleted: true });
  });
});
