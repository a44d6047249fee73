// The end-of-run summary of `portcullis run`: a pure function from the audit events (and the
// resource samples) to text. Also the one-line live rendering of a decision.
import type { AuditEvent } from '../audit/events.js';

export interface ResourcePeak {
  /** Highest sum of CPU percent over the sandbox's processes in one sample. */
  cpuPercent: number;
  /** Highest sum of resident memory in bytes in one sample. */
  memoryBytes: number;
  samples: number;
}

export interface SummaryInput {
  events: AuditEvent[];
  usage?: ResourcePeak;
  exitCode?: number;
  durationMs?: number;
  /** False when the run had no network fence (proxy environment only). */
  fenced?: boolean;
}

type Verdict = 'allow' | 'deny' | 'audit';

interface HostTally {
  count: number;
  reason?: string;
}

interface ProgramTally {
  byVerdict: Record<Verdict, Map<string, HostTally>>;
}

const CONNECTION_KINDS = new Set(['connect', 'http', 'sni', 'socks']);
const UNRESOLVED_LABEL = '<unresolved>';

/** Bytes of a finished tunnel or request: the proxy reports them in one of these pairs. */
export function eventBytes(event: AuditEvent): { sent: number; received: number } {
  const num = (value: unknown): number => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0);
  const pairs: Array<[string, string]> = [
    ['bytes_sent', 'bytes_received'],
    ['bytes_up', 'bytes_down'],
    ['bytes_out', 'bytes_in'],
    ['bytes_to_upstream', 'bytes_from_upstream'],
  ];
  let sent = 0;
  let received = 0;
  for (const [s, r] of pairs) {
    sent += num(event[s]);
    received += num(event[r]);
  }
  const nested = event.bytes as { sent?: unknown; received?: unknown; up?: unknown; down?: unknown } | undefined;
  if (nested && typeof nested === 'object') {
    sent += num(nested.sent) + num(nested.up);
    received += num(nested.received) + num(nested.down);
  }
  return { sent, received };
}

export function verdictOf(event: AuditEvent): Verdict | null {
  if (event.decision === 'allow' || event.decision === 'deny' || event.decision === 'audit') return event.decision;
  if (event.allow === true) return 'allow';
  if (event.allow === false) return 'deny';
  return null;
}

function target(event: AuditEvent): string {
  const host = event.host ?? '?';
  const shown = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return event.port ? `${shown}:${event.port}` : shown;
}

function requestPart(event: AuditEvent): string {
  return typeof event.method === 'string' && typeof event.path === 'string' ? ` ${event.method} ${event.path}` : '';
}

export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 'B';
  for (const u of units) {
    if (value < 1000) break;
    value /= 1000;
    unit = u;
  }
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${unit}`;
}

function sortedEntries<V>(map: Map<string, V>): Array<[string, V]> {
  return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function tallyEvents(events: AuditEvent[]) {
  const programs = new Map<string, ProgramTally>();
  const dnsRefused = new Map<string, number>();
  let dnsAnswered = 0;
  let sent = 0;
  let received = 0;
  let fenceRejectedPackets = 0;
  let directPackets = 0;
  let directBytes = 0;
  for (const event of events) {
    const bytes = eventBytes(event);
    sent += bytes.sent;
    received += bytes.received;
    const verdict = verdictOf(event);
    if (event.kind === 'dns') {
      if (verdict === 'deny') {
        const name = event.host ?? '?';
        dnsRefused.set(name, (dnsRefused.get(name) ?? 0) + 1);
      } else if (verdict !== null) {
        dnsAnswered++;
      }
      continue;
    }
    if (event.kind === 'flow') {
      const packets = typeof event.packets === 'number' ? event.packets : 0;
      const flowBytes = typeof event.bytes === 'number' ? event.bytes : 0;
      if (verdict === 'deny') fenceRejectedPackets += packets;
      else if (typeof event.policy === 'string') {
        directPackets += packets;
        directBytes += flowBytes;
      }
      continue;
    }
    if (!CONNECTION_KINDS.has(event.kind) || verdict === null) continue;
    const program = event.binary ?? UNRESOLVED_LABEL;
    let tally = programs.get(program);
    if (!tally) {
      tally = { byVerdict: { allow: new Map(), deny: new Map(), audit: new Map() } };
      programs.set(program, tally);
    }
    const key = `${target(event)}${verdict === 'allow' ? '' : requestPart(event)}`;
    const hosts = tally.byVerdict[verdict];
    const entry = hosts.get(key) ?? { count: 0 };
    entry.count++;
    if (entry.reason === undefined && verdict !== 'allow' && typeof event.reason === 'string') entry.reason = event.reason;
    hosts.set(key, entry);
  }
  return { programs, dnsRefused, dnsAnswered, sent, received, fenceRejectedPackets, directPackets, directBytes };
}

const LABEL: Record<Verdict, string> = { allow: 'allowed', deny: 'denied ', audit: 'audited' };
const MARK: Record<Verdict, string> = { allow: '✔', deny: '✘', audit: '!' };

export function renderSummary(input: SummaryInput): string {
  const t = tallyEvents(input.events);
  const lines: string[] = [];
  const rule = '─'.repeat(60);
  lines.push(`── portcullis summary ${rule.slice(22)}`);
  if (input.fenced === false) lines.push('  (no network fence: proxy environment only — programs that ignore HTTP_PROXY were not stopped)');
  if (t.programs.size === 0) lines.push('  no connections through the proxy');
  for (const [program, tally] of sortedEntries(t.programs)) {
    lines.push(`  ${program}`);
    for (const verdict of ['allow', 'deny', 'audit'] as const) {
      const hosts = tally.byVerdict[verdict];
      if (hosts.size === 0) continue;
      const total = [...hosts.values()].reduce((sum, h) => sum + h.count, 0);
      let first = true;
      for (const [host, h] of sortedEntries(hosts)) {
        const head = first ? `${MARK[verdict]} ${LABEL[verdict]} ${String(total).padStart(3)}` : ' '.repeat(13);
        const times = h.count > 1 ? ` ×${h.count}` : '';
        const why = h.reason ? `  — ${h.reason}` : '';
        lines.push(`    ${head}  ${host}${times}${why}`);
        first = false;
      }
    }
  }
  if (t.dnsRefused.size > 0) {
    const total = [...t.dnsRefused.values()].reduce((a, b) => a + b, 0);
    const names = sortedEntries(t.dnsRefused).map(([name, n]) => (n > 1 ? `${name} ×${n}` : name));
    lines.push(`  DNS refused ${String(total).padStart(3)}  ${names.join(', ')}`);
  }
  if (t.dnsAnswered > 0) lines.push(`  DNS answered ${String(t.dnsAnswered).padStart(2)}`);
  if (t.fenceRejectedPackets > 0 || t.directPackets > 0) {
    const parts: string[] = [];
    if (t.fenceRejectedPackets > 0) parts.push(`${t.fenceRejectedPackets} packet${t.fenceRejectedPackets === 1 ? '' : 's'} rejected (direct connections around the proxy)`);
    if (t.directPackets > 0) parts.push(`${t.directPackets} packets / ${formatBytes(t.directBytes)} allowed directly`);
    lines.push(`  nft fence    ${parts.join('; ')}`);
  }
  lines.push(`  traffic      ${formatBytes(t.sent)} sent, ${formatBytes(t.received)} received through the proxy`);
  if (input.usage && input.usage.samples > 0) {
    lines.push(`  sandbox peak CPU ${input.usage.cpuPercent.toFixed(0)}%, memory ${formatBytes(input.usage.memoryBytes)} (${input.usage.samples} samples)`);
  }
  const tail: string[] = [];
  if (input.exitCode !== undefined) tail.push(`exit code ${input.exitCode}`);
  if (input.durationMs !== undefined) tail.push(`${(input.durationMs / 1000).toFixed(1)} s`);
  if (tail.length > 0) lines.push(`  ${tail.join(', ')}`);
  lines.push(rule);
  return `${lines.join('\n')}\n`;
}

/** One line per decision, printed while CMD runs; null for events not worth a line. */
export function liveLine(event: AuditEvent): string | null {
  const verdict = verdictOf(event);
  if (verdict === null) return null;
  if (event.kind === 'dns') {
    if (verdict !== 'deny') return null;
    const rcode = typeof event.rcode === 'string' ? event.rcode : 'refused';
    return `portcullis: ✘ DNS     ${event.host ?? '?'} → ${rcode}${typeof event.reason === 'string' ? ` — ${event.reason}` : ''}`;
  }
  if (!CONNECTION_KINDS.has(event.kind)) return null;
  const program = event.binary ?? UNRESOLVED_LABEL;
  const via = event.kind === 'sni' ? ' (direct TLS, by SNI)' : event.kind === 'http' ? (event.tls === true ? ' (inspected HTTPS)' : ' (plain HTTP)') : event.kind === 'socks' ? ' (SOCKS5)' : '';
  const head = `portcullis: ${MARK[verdict]} ${LABEL[verdict]} ${program} → ${target(event)}${requestPart(event)}${via}`;
  if (verdict === 'allow') return `${head}${event.policy ? ` [policy ${event.policy}]` : ''}`;
  return `${head} — ${typeof event.reason === 'string' ? event.reason : 'no reason given'}`;
}
