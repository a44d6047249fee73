// An authoritative DNS server for the simulated internet, over UDP and TCP on one port.
// Known names get their A/AAAA records (or an empty NOERROR answer for a type they lack),
// unknown names get NXDOMAIN. Records can change between lookups (DNS rebinding tests).
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { tcpFrame } from '../dns/wire.js';

export interface DnsRecords {
  A?: string[];
  AAAA?: string[];
  ttl?: number;
}

export interface DnsQueryLog {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
}

export interface DnsServerOptions {
  /** Default 127.0.0.1. */
  address?: string;
  /** Default 0 (ephemeral; UDP and TCP share the port). */
  port?: number;
  records: Record<string, DnsRecords>;
}

export interface DnsServer {
  address: string;
  port: number;
  setRecords(name: string, records: DnsRecords): void;
  queries: DnsQueryLog[];
  close(): Promise<void>;
}

const DEFAULT_TTL = 60;
const RCODE = { NOERROR: 0, FORMERR: 1, NXDOMAIN: 3, NOTIMP: 4 } as const;
const MAX_TCP_MESSAGE = 65535 + 2;

export function normaliseName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** The response to one query message. Pure: the record table is read, never changed. */
export function answerQuery(records: ReadonlyMap<string, DnsRecords>, query: dnsPacket.Packet): dnsPacket.Packet {
  const questions = query.questions ?? [];
  const base = {
    type: 'response' as const,
    id: query.id ?? 0,
    questions,
    answers: [] as dnsPacket.Answer[],
  };
  const rd = query.flags !== undefined ? query.flags & dnsPacket.RECURSION_DESIRED : 0;
  const flags = (rcode: number): number => dnsPacket.AUTHORITATIVE_ANSWER | rd | rcode;
  const question = questions[0];
  if (questions.length !== 1 || question === undefined) return { ...base, flags: flags(RCODE.FORMERR) };
  const opcode = (query as { opcode?: string }).opcode;
  if (opcode !== undefined && opcode !== 'QUERY') return { ...base, flags: flags(RCODE.NOTIMP) };

  const entry = records.get(normaliseName(question.name));
  if (entry === undefined) return { ...base, flags: flags(RCODE.NXDOMAIN) };
  const ttl = entry.ttl ?? DEFAULT_TTL;
  const answers: dnsPacket.Answer[] = [];
  const type: string = question.type;
  if (type === 'A' || type === 'ANY') {
    for (const data of entry.A ?? []) answers.push({ type: 'A', name: question.name, ttl, class: 'IN', data });
  }
  if (type === 'AAAA' || type === 'ANY') {
    for (const data of entry.AAAA ?? []) answers.push({ type: 'AAAA', name: question.name, ttl, class: 'IN', data });
  }
  return { ...base, answers, flags: flags(RCODE.NOERROR) };
}

function describe(query: dnsPacket.Packet, transport: 'udp' | 'tcp'): DnsQueryLog {
  const question = query.questions?.[0];
  return { name: question ? normaliseName(question.name) : '', type: question?.type ?? '', transport };
}

export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const address = opts.address ?? '127.0.0.1';
  const records = new Map<string, DnsRecords>();
  for (const [name, entry] of Object.entries(opts.records)) records.set(normaliseName(name), { ...entry });
  const queries: DnsQueryLog[] = [];

  const respond = (message: Buffer, transport: 'udp' | 'tcp'): Buffer | null => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return null; // not DNS: say nothing, like a real server facing garbage
    }
    if (query.type === 'response') return null;
    queries.push(describe(query, transport));
    return dnsPacket.encode(answerQuery(records, query));
  };

  const sockets = new Set<net.Socket>();
  const onUdpMessage = (udp: dgram.Socket) => (message: Buffer, remote: dgram.RemoteInfo) => {
    const reply = respond(message, 'udp');
    if (reply) udp.send(reply, remote.port, remote.address);
  };
  const onTcpConnection = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (pending.length > MAX_TCP_MESSAGE * 4) socket.destroy();
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0);
        if (pending.length < length + 2) break;
        const message = pending.subarray(2, length + 2);
        pending = pending.subarray(length + 2);
        const reply = respond(message, 'tcp');
        if (reply === null) {
          socket.destroy();
          return;
        }
        socket.write(tcpFrame(reply));
      }
    });
  };

  // UDP and TCP share a port; with port 0 the TCP bind may find the UDP port taken: retry.
  const { udp, tcp } = await bindPair(address, opts.port ?? 0, onUdpMessage, onTcpConnection);
  const port = udp.address().port;

  return {
    address,
    port,
    queries,
    setRecords(name, entry) {
      records.set(normaliseName(name), { ...entry });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}

async function bindPair(
  address: string,
  wantedPort: number,
  onUdpMessage: (udp: dgram.Socket) => (message: Buffer, remote: dgram.RemoteInfo) => void,
  onTcpConnection: (socket: net.Socket) => void,
): Promise<{ udp: dgram.Socket; tcp: net.Server }> {
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
    udp.on('message', onUdpMessage(udp));
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(wantedPort, address, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    // A send to a vanished client must not bring the server down.
    udp.on('error', () => undefined);
    const tcp = net.createServer(onTcpConnection);
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(udp.address().port, address, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      return { udp, tcp };
    } catch (err) {
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      if (wantedPort !== 0 || attempt >= 20) throw err;
    }
  }
}
