// The direct allows of one family in nft syntax. Pure.
//
// Whatever their form, they end in a chain `direct4` (or `direct6`) that finds a packet's
// `address . port`, counts it on the owning endpoint's counter and accepts it, and returns
// when no map holds it. Two forms (the plan picks one per family):
// - hashed: a hash map per prefix length keyed by `network . port`; the chain masks the address
//   to each length in turn, most specific first. A lookup costs the same however many
//   endpoints there are. These flows are not tracked (render.ts says why), so two more chains,
//   hooked at the raw priority by the renderer, leave them untracked going out (by destination)
//   and coming back (by source), through the same maps;
// - searched: an interval map of addresses per port, found through a verdict map of ports (one
//   interval map keyed by `address . port` would do with one lookup, but that lookup reads a
//   bitmap per rule: with 20,000 rules it cost new connections several percent of their rate).
//   A search among a port's ranges costs more the more ranges it holds, so it is made once per
//   flow: a TCP connection is searched at its SYN, in the raw output chain, and joins the live
//   set (live.ts), which carries the rest of it untracked; a UDP flow stays tracked and is
//   looked up at its first packet.
import { ADDRESS_BITS, formatAddress, formatMask, formatRange, ipKeyword as ip, type Family } from './intervals.js';
import { joinLive } from './live.js';
import { counterName } from './names.js';
import { block, elements } from './syntax.js';
import type { DirectAllows, DirectBlock, DirectElement } from './plan.js';

export interface DirectRules {
  declarations: string[];
  chains: string[];
  /** Chains that leave the flows untracked, going out and coming back (hashed form). */
  untrack?: { out: string; in: string };
  /**
   * For the raw output chain, after `meta nfproto … SYN`: admits a new TCP connection through
   * the search and puts it in the live set (searched form).
   */
  opening?: string;
}

/** An address and port whose flows must stay tracked even when a direct allow covers them. */
export interface TrackedDestination {
  address: string;
  port: number;
}

/** The chain every form ends in. */
export const directChain = (family: Family): string => `direct${family}`;
/** Set of the ports that have direct allows (hashed form). */
export const directPorts = (family: Family): string => `direct${family}_ports`;

function groupBy<T>(items: T[], key: (item: T) => number): Array<[number, T[]]> {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const group = groups.get(key(item));
    if (group === undefined) groups.set(key(item), [item]);
    else group.push(item);
  }
  return [...groups];
}

function hashed(family: Family, blocks: DirectBlock[], tracked: TrackedDestination | null): DirectRules {
  const map = (bits: number): string => `direct${family}_${bits}`;
  /** `ip daddr & 255.255.255.0 . th dport`: the key of the map of that length. */
  const key = (field: 'daddr' | 'saddr', bits: number): string => {
    const mask = bits === ADDRESS_BITS[family] ? '' : ` & ${formatMask(bits, family)}`;
    return `${ip(family)} ${field}${mask} . th ${field === 'daddr' ? 'dport' : 'sport'}`;
  };
  const groups = groupBy(blocks, (b) => b.bits);
  const declarations: string[] = [];
  for (const [bits, group] of groups) {
    declarations.push(
      ...block(`map ${map(bits)}`, [
        `type ipv${family}_addr . inet_service : counter`,
        ...elements(group.map((b) => `${formatAddress(b.range.start, family)} . ${b.port} : "${counterName(b.id)}"`)),
      ]),
    );
  }
  const ports = [...new Set(blocks.map((b) => b.port))].sort((a, b) => a - b);
  declarations.push(...block(`set ${directPorts(family)}`, ['type inet_service', ...elements(ports.map(String))]));

  const lengths = groups.map(([bits]) => bits);
  const count = lengths.map((bits) => `counter name ${key('daddr', bits)} map @${map(bits)} accept`);
  // Going out, the lookup that leaves a packet untracked also counts it (the output chain takes
  // untracked packets as they come, render.ts).
  const out = lengths.map((bits) => `counter name ${key('daddr', bits)} map @${map(bits)} notrack accept`);
  const back = lengths.map((bits) => `${key('saddr', bits)} @${map(bits)} notrack accept`);
  if (tracked !== null) {
    out.unshift(`${ip(family)} daddr ${tracked.address} tcp dport ${tracked.port} return`);
    back.unshift(`${ip(family)} saddr ${tracked.address} tcp sport ${tracked.port} return`);
  }
  const untrack = { out: `untrack_out${family}`, in: `untrack_in${family}` };
  const chains: string[] = [];
  for (const [name, rules] of [[directChain(family), count], [untrack.out, out], [untrack.in, back]] as const) {
    chains.push(...block(`chain ${name}`, rules));
  }
  return { declarations, chains, untrack };
}

function searched(family: Family, pieces: DirectElement[], tracked: TrackedDestination | null): DirectRules {
  const map = (port: number): string => `direct${family}_${port}`;
  const chain = (port: number): string => `port${family}_${port}`;
  const liveChain = (port: number): string => `live_port${family}_${port}`;
  const ports = groupBy(pieces, (p) => p.port);
  const declarations: string[] = [];
  const chains: string[] = [];
  for (const [port, group] of ports) {
    declarations.push(
      ...block(`map ${map(port)}`, [
        `type ipv${family}_addr : counter`,
        'flags interval',
        ...elements(group.map((p) => `${formatRange(p.range)} : "${counterName(p.id)}"`)),
      ]),
    );
    const found = `counter name ${ip(family)} daddr map @${map(port)}`;
    chains.push(...block(`chain ${chain(port)}`, [`${found} accept`]));
    // A full live set fails the update, so the rule does not match: the connection is then
    // tracked and searched again in the output chain.
    const guard = tracked !== null && tracked.port === port ? [`${ip(family)} daddr ${tracked.address} return`] : [];
    chains.push(...block(`chain ${liveChain(port)}`, [...guard, `${found} ${joinLive(family)} notrack accept`]));
  }
  declarations.push(...block(`map ports${family}`, ['type inet_service : verdict', ...elements(ports.map(([port]) => `${port} : jump ${chain(port)}`))]));
  declarations.push(...block(`map live_ports${family}`, ['type inet_service : verdict', ...elements(ports.map(([port]) => `${port} : jump ${liveChain(port)}`))]));
  // A port chain that finds no address returns here, and this chain to its caller.
  chains.push(...block(`chain ${directChain(family)}`, [`th dport vmap @ports${family}`]));
  return { declarations, chains, opening: `tcp dport vmap @live_ports${family}` };
}

/** A family's direct allows (none: null). `tracked`: a covered destination to keep tracked. */
export function renderDirect(family: Family, allows: DirectAllows, tracked: TrackedDestination | null): DirectRules | null {
  if (allows.form === 'hashed') return allows.blocks.length > 0 ? hashed(family, allows.blocks, tracked) : null;
  return allows.pieces.length > 0 ? searched(family, allows.pieces, tracked) : null;
}
