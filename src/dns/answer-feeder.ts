// What an answer does to the kernel: its addresses are recorded (who was handed what) and put
// into the nft host maps of the kernel endpoints that cover the name, before the answer is
// released. An answer identical to the last one for its name and type skips the book and the
// element computation (the hot path).
import ipaddr from 'ipaddr.js';
import type { AuditEvent } from '../audit/events.js';
import { forbiddenAddressClass } from '../net/classes.js';
import type { HostElement, NftSetFeeder, TimedHostElement } from '../nft/set-feeder.js';
import { answeredAddresses } from './answers.js';
import { addressAllowed, type NameCoverage } from './coverage.js';
import type { HandedOutBook } from './handed-out.js';

const MAX_REMEMBERED_ANSWERS = 10_000;

export interface AnswerFeederOptions {
  book: HandedOutBook;
  feeder: NftSetFeeder | undefined;
  /** Host-map elements live at least this long, whatever the TTL. */
  ttlFloorSeconds: number;
  emit: (event: AuditEvent) => void;
}

interface Remembered {
  key: string;
  elements: Map<string, HostElement[]>;
}

export class AnswerFeeder {
  private lastAnswer = new Map<string, Remembered>();

  constructor(private readonly opts: AnswerFeederOptions) {}

  /** New policies, new (empty) maps: nothing remembered applies any more. */
  reset(): void {
    this.lastAnswer = new Map();
  }

  /** Records the answer and fills the host maps; returns the answered addresses in order. */
  async feed(name: string, qtype: number, coverage: NameCoverage, response: Buffer): Promise<string[]> {
    const answered = answeredAddresses(response);
    if (answered.length === 0) return [];
    const ttlOf = new Map<string, number>();
    const familyOf = new Map<string, 4 | 6>();
    for (const a of answered) {
      ttlOf.set(a.address, Math.max(ttlOf.get(a.address) ?? 0, a.ttl));
      familyOf.set(a.address, a.family);
    }
    const order = [...ttlOf.keys()];
    const key = order.join(' ');
    const memoKey = `${qtype} ${name}`;
    let last = this.lastAnswer.get(memoKey);
    if (last === undefined || last.key !== key) {
      last = { key, elements: this.record(name, coverage, order, familyOf) };
      if (this.lastAnswer.size >= MAX_REMEMBERED_ANSWERS) this.lastAnswer = new Map();
      this.lastAnswer.set(memoKey, last);
    }
    const { feeder } = this.opts;
    if (feeder === undefined || coverage.targets.length === 0) return order;
    const timed: TimedHostElement[] = [];
    for (const [address, elements] of last.elements) {
      const timeoutSeconds = Math.max(ttlOf.get(address)!, this.opts.ttlFloorSeconds);
      for (const e of elements) timed.push({ endpoint: e.endpoint, address: e.address, port: e.port, timeoutSeconds });
    }
    if (timed.length > 0) await feeder.add(timed);
    return order;
  }

  /** Books the answer per family and works out each address's host-map elements. */
  private record(name: string, coverage: NameCoverage, order: string[], familyOf: Map<string, 4 | 6>): Map<string, HostElement[]> {
    const elements = new Map<string, HostElement[]>();
    const withheld = new Set<string>();
    const elementsOf = (address: string): HostElement[] => {
      const out = this.elementsOf(address, coverage, withheld);
      elements.set(address, out);
      return out;
    };
    const release: HostElement[] = [];
    for (const family of [4, 6] as const) {
      const ofFamily = order.filter((address) => familyOf.get(address) === family);
      if (ofFamily.length > 0) release.push(...this.opts.book.record(name, ofFamily, elementsOf, family).release);
    }
    if (withheld.size > 0) {
      this.opts.emit({
        kind: 'dns',
        host: name,
        port: null,
        allow: true,
        decision: 'allow',
        policy: coverage.targets[0]!.policy,
        reason: `answered, but not opened in the kernel: ${[...withheld].join(', ')}; special addresses are opened only where an endpoint's allowed_ips names them`,
        withheld: [...withheld],
      });
    }
    if (release.length > 0) this.opts.feeder?.remove(release).catch(() => undefined); // need not hold the answer back
    return elements;
  }

  /** The host-map elements of one address: one per covering target and port. */
  private elementsOf(address: string, coverage: NameCoverage, withheld: Set<string>): HostElement[] {
    const parsed = ipaddr.parse(address);
    // The kernel must not open what the proxy would refuse to dial: loopback, private,
    // metadata and other special addresses only when `allowed_ips` names them.
    const unsafe = this.opts.feeder !== undefined && coverage.targets.length > 0 ? forbiddenAddressClass(address) : null;
    const out: HostElement[] = [];
    for (const target of coverage.targets) {
      if (!addressAllowed(target, parsed)) continue;
      if (unsafe !== null && target.allowedIps.length === 0) {
        withheld.add(`${address} (${unsafe})`);
        continue;
      }
      for (const port of target.ports) out.push({ endpoint: target.id, address, port });
    }
    return out;
  }
}
