// The simulated internet: CA, DNS server, namespace with HTTPS/HTTP/echo servers, clean-up.
import { execFile, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, type CertificateAuthority } from '../src/sim/ca.js';
import { startDnsServer, type DnsServer } from '../src/sim/dns-server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';
import { cleanupStaleNamespaces, listNamespaces } from '../src/netns/namespaces.js';

const execFileAsync = promisify(execFile);

async function queryUdp(port: number, name: string, type: 'A' | 'AAAA'): Promise<dnsPacket.DecodedPacket> {
  const socket = dgram.createSocket('udp4');
  try {
    const reply = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('DNS timeout')), 3000);
      socket.once('message', (msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
    });
    socket.send(dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }), port, '127.0.0.1');
    return dnsPacket.decode(await reply);
  } finally {
    socket.close();
  }
}

async function queryTcp(port: number, name: string, type: 'A' | 'AAAA'): Promise<dnsPacket.DecodedPacket> {
  const socket = net.connect(port, '127.0.0.1');
  try {
    socket.write(dnsPacket.streamEncode({ type: 'query', id: 9, questions: [{ type, name }] }));
    const data = await new Promise<Buffer>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const timer = setTimeout(() => reject(new Error('DNS timeout')), 3000);
      socket.on('error', reject);
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
          clearTimeout(timer);
          resolve(buf);
        }
      });
    });
    return dnsPacket.streamDecode(data);
  } finally {
    socket.destroy();
  }
}

function data(packet: dnsPacket.DecodedPacket): string[] {
  return (packet.answers ?? []).map((a) => String((a as { data: unknown }).data));
}

/** TLS handshake against `host:port` with SNI `servername`; resolves with the peer's CN. */
function handshake(opts: { host: string; port: number; servername: string; ca: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...opts, timeout: 5000 }, () => {
      const cn = socket.getPeerCertificate().subject?.CN;
      socket.destroy();
      resolve(String(cn));
    });
    socket.on('error', reject);
    socket.on('timeout', () => socket.destroy(new Error('TLS timeout')));
  });
}

describe('certificate authority', () => {
  let ca: CertificateAuthority;
  let other: CertificateAuthority;
  let server: tls.Server;
  let port: number;

  beforeAll(async () => {
    ca = await createCertificateAuthority();
    other = await createCertificateAuthority('another CA');
    const leaf = await ca.issue(['svc.example.test'], ['127.0.0.1']);
    server = tls.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (s) => s.end('hi'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('issues a chain that validates against the CA for its name and its IP', async () => {
    expect(await handshake({ host: '127.0.0.1', port, servername: 'svc.example.test', ca: ca.certPem })).toBe('svc.example.test');
    // IP SAN: no servername, the IP is checked.
    await new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: ca.certPem }, () => {
        expect(s.authorized).toBe(true);
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    });
  });

  it('fails for another name and for another CA', async () => {
    await expect(handshake({ host: '127.0.0.1', port, servername: 'wrong.example.test', ca: ca.certPem })).rejects.toThrow(/altnames|Hostname/i);
    await expect(handshake({ host: '127.0.0.1', port, servername: 'svc.example.test', ca: other.certPem })).rejects.toThrow(/certificate/i);
  });
});

describe('DNS server', () => {
  let dns: DnsServer;
  beforeAll(async () => {
    dns = await startDnsServer({ records: { 'Api.Example.Test.': { A: ['203.0.113.5'], AAAA: ['2001:db8::5'], ttl: 30 }, 'v4only.example.test': { A: ['198.51.100.9'] } } });
  });
  afterAll(async () => {
    await dns.close();
  });

  it('answers A and AAAA over UDP and TCP, authoritatively, case-insensitively', async () => {
    const a = await queryUdp(dns.port, 'api.example.test', 'A');
    expect(a.rcode).toBe('NOERROR');
    expect(a.flag_aa).toBe(true);
    expect(a.id).toBe(7);
    expect(data(a)).toEqual(['203.0.113.5']);
    expect(a.answers?.[0]?.ttl).toBe(30);
    expect(data(await queryUdp(dns.port, 'API.example.test', 'AAAA'))).toEqual(['2001:db8::5']);
    const t = await queryTcp(dns.port, 'api.example.test', 'AAAA');
    expect(t.id).toBe(9);
    expect(data(t)).toEqual(['2001:db8::5']);
    expect(data(await queryTcp(dns.port, 'v4only.example.test', 'A'))).toEqual(['198.51.100.9']);
  });

  it('gives NXDOMAIN for unknown names and an empty answer for a missing type', async () => {
    expect((await queryUdp(dns.port, 'nope.example.test', 'A')).rcode).toBe('NXDOMAIN');
    expect((await queryTcp(dns.port, 'nope.example.test', 'AAAA')).rcode).toBe('NXDOMAIN');
    const nodata = await queryUdp(dns.port, 'v4only.example.test', 'AAAA');
    expect(nodata.rcode).toBe('NOERROR');
    expect(nodata.answers).toEqual([]);
  });

  it('changes its answers after setRecords and logs every query', async () => {
    dns.setRecords('api.example.test', { A: ['203.0.113.99', '203.0.113.98'] });
    expect(data(await queryUdp(dns.port, 'api.example.test', 'A')).sort()).toEqual(['203.0.113.98', '203.0.113.99']);
    dns.setRecords('new.example.test', { A: ['198.51.100.1'] });
    expect(data(await queryTcp(dns.port, 'new.example.test', 'A'))).toEqual(['198.51.100.1']);
    expect(dns.queries).toContainEqual({ name: 'new.example.test', type: 'A', transport: 'tcp' });
    expect(dns.queries).toContainEqual({ name: 'api.example.test', type: 'AAAA', transport: 'udp' });
  });

  it('survives garbage and keeps answering', async () => {
    const socket = dgram.createSocket('udp4');
    socket.send(Buffer.from('not dns at all'), dns.port, '127.0.0.1');
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.close();
    expect(data(await queryUdp(dns.port, 'v4only.example.test', 'A'))).toEqual(['198.51.100.9']);
  });
});

describe('simulated internet', () => {
  let sim: SimulatedInternet;
  let caFile: string;
  let servePid: number;
  const stalePid = (() => {
    // A pid that is certainly dead: a child that has exited.
    const r = spawnSync('true');
    return r.pid as number;
  })();
  const staleNs = `pcsim-${stalePid}-0`;

  beforeAll(async () => {
    // A leftover from a "killed earlier run": the next start removes it.
    await execFileAsync('ip', ['netns', 'add', staleNs]).catch(() => undefined);
    sim = await startSimulatedInternet({
      hosts: { 'api.example.test': {}, 'files.example.test': {} },
      extraPorts: [7007],
    });
    caFile = join(mkdtempSync(join(tmpdir(), 'pcsim-test-')), 'ca.pem');
    writeFileSync(caFile, sim.ca.certPem);
    const { stdout } = await execFileAsync('ip', ['netns', 'pids', sim.netns]);
    servePid = Number(stdout.trim().split('\n')[0]);
  });
  afterAll(async () => {
    await sim?.close();
    await execFileAsync('ip', ['netns', 'del', staleNs]).catch(() => undefined);
  });

  it('removed the stale namespace of a dead process', async () => {
    expect(await listNamespaces()).not.toContain(staleNs);
    expect(await listNamespaces()).toContain(sim.netns);
    expect(await cleanupStaleNamespaces('pcsim-')).toEqual([]);
  });

  it('gives every host unique documentation addresses and answers them in DNS', async () => {
    const api = sim.hosts['api.example.test'];
    const files = sim.hosts['files.example.test'];
    expect(api?.v4).toMatch(/^(203\.0\.113|198\.51\.100)\.\d+$/);
    expect(api?.v6).toMatch(/^2001:db8:/);
    expect(api?.v4).not.toBe(files?.v4);
    expect(data(await queryUdp(sim.dns.port, 'api.example.test', 'A'))).toEqual([api?.v4]);
    expect(data(await queryTcp(sim.dns.port, 'files.example.test', 'AAAA'))).toEqual([files?.v6]);
  });

  it('serves HTTPS over IPv4 and IPv6 through the veth with the CA (curl --resolve --cacert)', async () => {
    const api = sim.hosts['api.example.test']!;
    const v4 = await execFileAsync('curl', ['-sS', '--max-time', '5', '--cacert', caFile, '--resolve', `api.example.test:443:${api.v4}`, 'https://api.example.test/v1/hello']);
    expect(JSON.parse(v4.stdout)).toEqual({ host: 'api.example.test', method: 'GET', path: '/v1/hello', tls: true, bodyBytes: 0 });
    const v6 = await execFileAsync('curl', ['-sS', '--max-time', '5', '--cacert', caFile, '--resolve', `api.example.test:443:[${api.v6}]`, '-X', 'POST', '--data', 'abc', 'https://api.example.test/post']);
    expect(JSON.parse(v6.stdout)).toEqual({ host: 'api.example.test', method: 'POST', path: '/post', tls: true, bodyBytes: 3 });
  });

  it('picks the certificate by SNI', async () => {
    const files = sim.hosts['files.example.test']!;
    expect(await handshake({ host: files.v4!, port: 443, servername: 'files.example.test', ca: sim.ca.certPem })).toBe('files.example.test');
    expect(await handshake({ host: files.v4!, port: 443, servername: 'api.example.test', ca: sim.ca.certPem })).toBe('api.example.test');
    // curl refuses a name the CA never issued for.
    await expect(
      execFileAsync('curl', ['-sS', '--max-time', '5', '--cacert', caFile, '--resolve', `unknown.example.test:443:${files.v4}`, 'https://unknown.example.test/']),
    ).rejects.toThrow();
  });

  it('serves plain HTTP, /bytes/N and TCP echo on extra ports', async () => {
    const files = sim.hosts['files.example.test']!;
    const plain = await execFileAsync('curl', ['-sS', '--max-time', '5', '-H', 'Host: files.example.test', `http://${files.v4}/x`]);
    expect(JSON.parse(plain.stdout)).toMatchObject({ host: 'files.example.test', path: '/x', tls: false });
    const sized = await execFileAsync('curl', ['-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{size_download}', `http://[${files.v6}]/bytes/1234567`]);
    expect(Number(sized.stdout)).toBe(1234567);
    const echoed = await new Promise<string>((resolve, reject) => {
      const s = net.connect(7007, files.v4!, () => s.write('ping'));
      s.setTimeout(5000, () => s.destroy(new Error('echo timeout')));
      s.on('data', (d) => {
        resolve(d.toString());
        s.destroy();
      });
      s.on('error', reject);
    });
    expect(echoed).toBe('ping');
  });

  it('refuses an address another simulated internet already routes, and cleans up after itself', async () => {
    const taken = sim.hosts['api.example.test']!.v4!;
    const ours = async () => (await listNamespaces()).filter((n) => n.startsWith(`pcsim-${process.pid}-`));
    const before = await ours();
    await expect(startSimulatedInternet({ hosts: { 'clash.example.test': { v4: taken } } })).rejects.toThrow(/already routed/);
    expect(await ours()).toEqual(before);
  });

  it('close() leaves no namespace, no route and no process behind', async () => {
    const api = sim.hosts['api.example.test']!;
    // Whole addresses (a route's destination, maybe with a prefix length): another test's
    // simulated internet may hold 203.0.113.10 while this one had 203.0.113.1.
    const routed = async (): Promise<Set<string>> => {
      const routes = (await execFileAsync('ip', ['-4', 'route', 'show'])).stdout + (await execFileAsync('ip', ['-6', 'route', 'show'])).stdout;
      return new Set(routes.split(/\s+/).map((word) => word.replace(/\/\d+$/, '')));
    };
    const before = await routed();
    expect(before).toContain(api.v4!);
    expect(before).toContain(api.v6!);
    expect(process.kill(servePid, 0)).toBe(true);
    await sim.close();
    expect(await listNamespaces()).not.toContain(sim.netns);
    const after = await routed();
    expect(after).not.toContain(api.v4!);
    expect(after).not.toContain(api.v6!);
    expect(() => process.kill(servePid, 0)).toThrow();
    const links = (await execFileAsync('ip', ['-o', 'link', 'show'])).stdout;
    expect(links).not.toContain(sim.hostInterface);
  });
});
