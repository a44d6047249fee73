// One DNS query → one answer: refused unless some policy endpoint names the name; otherwise
// forwarded upstream, its addresses put into the kernel's host maps before the answer goes back
// (SERVFAIL when the upstream fails, or when the maps cannot be filled for a name they serve).
import type { AuditEvent } from '../audit/events.js';
import { placeholdersInHost, type SwapTable } from '../credentials/swap.js';
import type { Policy } from '../policy/types.js';
import type { AnswerFeeder } from './answer-feeder.js';
import { CoverageIndex, canonicalQueryName, type NameCoverage } from './coverage.js';
import { tcpQuery, type UdpUpstream, type UpstreamAddress } from './upstream.js';
import { RCODE, buildReply, buildUpstreamQuery, matchResponse, parseQuery, qtypeName, withId, type ParsedQuery, type Rcode } from './wire.js';

export type Transport = 'udp' | 'tcp';

export interface DnsProxyStats {
  forwarded: number;
  refused: number;
  malformed: number;
  servfail: number;
}

export interface QueryAnswererOptions {
  policies: Policy[];
  refusalRcode: Rcode;
  udpUpstream: UdpUpstream;
  upstream: UpstreamAddress;
  timeoutMs: number;
  answers: AnswerFeeder;
  emit: (event: AuditEvent) => void;
  stats: DnsProxyStats;
  /** Also audit every forwarded answer (default: refusals and failures only). */
  auditAnswers: boolean;
  /** Credentials whose placeholders are refused in query names. */
  credentials?: { readonly table: SwapTable };
}

const COVERAGE_CACHE = 10_000;
const RCODE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(RCODE).map(([k, v]) => [v, k]));

function dnsEvent(query: ParsedQuery, transport: Transport, client: string, fields: Partial<AuditEvent>): AuditEvent {
  return { kind: 'dns', host: query.name.toLowerCase(), port: null, qtype: qtypeName(query.qtype), transport, client, allow: false, decision: 'deny', policy: null, reason: '', ...fields };
}

export class QueryAnswerer {
  private index: CoverageIndex;
  private coverageCache = new Map<string, NameCoverage>();

  constructor(private readonly opts: QueryAnswererOptions) {
    this.index = new CoverageIndex(opts.policies);
  }

  setPolicies(policies: Policy[]): void {
    this.index = new CoverageIndex(policies);
    this.coverageCache = new Map();
  }

  /** The answer to one query message, or null to say nothing. */
  async answer(message: Buffer, transport: Transport, client: string): Promise<Buffer | null> {
    const { stats } = this.opts;
    const parsed = parseQuery(message);
    if (!parsed.ok) {
      stats.malformed++;
      if (parsed.reply === null) return null;
      return buildReply(parsed.reply.id, parsed.reply.flags, parsed.reply.rcode, parsed.reply.question);
    }
    const query = parsed.query;
    const misused = this.opts.credentials ? placeholdersInHost(query.name, this.opts.credentials.table) : [];
    if (misused.length > 0) return this.refuseMisuse(query, transport, client, misused);
    const name = canonicalQueryName(query.name);
    const coverage = name === null || query.qclass !== 1 ? null : this.coverageOf(name);
    if (coverage === null || !coverage.covered) return this.refuse(query, transport, client, name === null || coverage === null);
    let response: Buffer;
    try {
      response = await this.askUpstream(query, transport);
    } catch (err) {
      return this.servfail(query, transport, client, coverage, `upstream failure: ${(err as Error).message}`);
    }
    const match = matchResponse(response, query.question);
    let addresses: string[] = [];
    if (match !== null && match.rcode === RCODE.NOERROR) {
      try {
        addresses = await this.opts.answers.feed(name!, query.qtype, coverage, response);
      } catch (err) {
        // The answer is only released once its addresses are in the maps; without maps to
        // fill, an answer the proxy cannot read is still the upstream's to give.
        if (coverage.targets.length > 0) return this.servfail(query, transport, client, coverage, `could not open the answered addresses in nftables: ${(err as Error).message}`);
      }
    }
    stats.forwarded++;
    if (this.opts.auditAnswers) {
      this.opts.emit(
        dnsEvent(query, transport, client, {
          allow: true,
          decision: 'allow',
          policy: coverage.policies[0] ?? null,
          reason: `forwarded: ${name} is named by policy ${coverage.policies.join(', ')}`,
          rcode: RCODE_NAMES[match?.rcode ?? -1] ?? 'unknown',
          addresses,
        }),
      );
    }
    return withId(response, query.id);
  }

  private coverageOf(name: string): NameCoverage {
    let c = this.coverageCache.get(name);
    if (c === undefined) {
      c = this.index.lookup(name);
      if (this.coverageCache.size >= COVERAGE_CACHE) this.coverageCache = new Map();
      this.coverageCache.set(name, c);
    }
    return c;
  }

  private askUpstream(query: ParsedQuery, transport: Transport): Promise<Buffer> {
    if (transport === 'udp') return this.opts.udpUpstream.query(query.question, (id) => buildUpstreamQuery(query, id, 'udp'));
    return tcpQuery(this.opts.upstream, query.question, buildUpstreamQuery(query, Math.floor(Math.random() * 65536), 'tcp'), this.opts.timeoutMs);
  }

  private refuse(query: ParsedQuery, transport: Transport, client: string, notAHostName: boolean): Buffer {
    this.opts.stats.refused++;
    const name = canonicalQueryName(query.name);
    this.opts.emit(
      dnsEvent(query, transport, client, {
        reason: notAHostName ? `query for "${query.name}" (${qtypeName(query.qtype)}) is not an Internet-class host name; refused` : `${name} is not named by any policy endpoint; DNS query refused`,
        rcode: this.opts.refusalRcode === RCODE.REFUSED ? 'REFUSED' : 'NXDOMAIN',
      }),
    );
    return buildReply(query.id, query.flags, this.opts.refusalRcode, query.question);
  }

  // A placeholder in a query name is never a host to look up: it is a secret's stand-in on its
  // way out. REFUSED whatever the refusal setting, and audited by the credentials' names only.
  private refuseMisuse(query: ParsedQuery, transport: Transport, client: string, credentials: string[]): Buffer {
    this.opts.stats.refused++;
    const reason = `a DNS query name carries a placeholder of credential ${credentials.map((n) => `"${n}"`).join(', ')}; placeholders are swapped only in requests to the endpoints that bind them, never looked up; refused`;
    this.opts.emit({ ...dnsEvent(query, transport, client, { reason, rcode: 'REFUSED' }), kind: 'credential_misuse', via: 'dns', host: null, credentials, error: 'credential_not_bound' });
    return buildReply(query.id, query.flags, RCODE.REFUSED, query.question);
  }

  private servfail(query: ParsedQuery, transport: Transport, client: string, coverage: NameCoverage, reason: string): Buffer {
    this.opts.stats.servfail++;
    this.opts.emit(dnsEvent(query, transport, client, { reason, rcode: 'SERVFAIL', policy: coverage.policies[0] ?? null }));
    return buildReply(query.id, query.flags, RCODE.SERVFAIL, query.question);
  }
}
