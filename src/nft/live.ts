// Hostname connections without the connection tracker. Pure.
//
// A hostname endpoint admits a new connection while its host map holds the `address . port`
// (the DNS proxy's answer, for its TTL), and the connection must outlive that element. The
// tracker gave both, at the price of an entry created, confirmed and freed per connection: the
// largest cost of a short connection. Here, stateless lookups give the same:
//   - a TCP SYN is admitted by the host map, as before, and puts its `address . port` in the
//     family's live set;
//   - any other TCP packet to an `address . port` in the live set goes on. Every packet sent
//     refreshes the element, so the set keeps what is in use; an element left idle for
//     LIVE_TIMEOUT (the tracker's own timeout of an established connection) is dropped.
// A packet without SYN cannot open a connection: an unprivileged process sends TCP only
// through the kernel's sockets, which begin with a SYN, and that SYN needed the host map. So the
// live set opens nothing new; it only keeps going what the host map let in. Replies, matched
// by source in the same set, are left untracked too. UDP to hostname endpoints stays tracked
// (a first datagram has nothing like a SYN). Direct allows searched by port (direct.ts) admit
// their new TCP connections the same way: the SYN is searched once, joins the live set, and the
// rest of the connection needs no search.
//
// One flow must keep the tracker even so: a connection that the SNI redirect sent to the
// listener (its address was in no map when it began) needs its NAT for every packet. If its
// `address . port` enters the live set later (a CDN address that another, allowed name also
// resolves to), its packets must not be left untracked, or they would leave un-NATed: the NAT
// chain notes every redirected connection (`address . port . source port`, refreshed by
// traffic), and the raw chain leaves those to the tracker. The listener's replies are never
// left untracked either (the tracker un-NATs them).
//
// When a set is full, adding to it fails and the rule does not match: a new connection then
// falls through to the tracked path and is decided there, and a redirect is refused by the fence
// (never sent un-NATed).
//
// The sets live in the table, so applying the script again (which replaces the table) empties
// them, as it empties the host maps: open hostname connections are then refused at their next
// packet, where tracked ones would have gone on (the tracker's entries outlive the table).
// `portcullis run` applies its ruleset once per sandbox.
import { ipKeyword, type Family } from './intervals.js';
import { hostMapName } from './names.js';
import { block } from './syntax.js';

/** How long an idle `address . port` stays live: nf_conntrack_tcp_timeout_established's default. */
const LIVE_TIMEOUT = '5d';
/** Elements per set: a bound on memory; beyond it new connections are tracked. */
export const LIVE_SIZE = 65536;

export const liveSetName = (family: Family): string => `live${family}`;
export const redirectedSetName = (family: Family): string => `redirected${family}`;
/** The statement by which an admitted SYN puts its `address . port` in the live set. */
export const joinLive = (family: Family): string => `update @${liveSetName(family)} { ${ipKeyword(family)} daddr . tcp dport }`;

/** Where the listener of the SNI redirect is, and the port it takes. */
export interface RedirectTarget {
  family: Family;
  address: string;
  port: number;
  /** The port redirected (443). */
  redirectedPort: number;
}

/** Rules placed around the direct allows' in a chain: `open` before them, `opening` after. */
export interface AroundDirect {
  /** Packets of open connections: the live set is small (only what is in use), a miss is cheap. */
  open: string[];
  /** New connections (SYN): the direct allows answer first, the host map after them. */
  opening: string[];
}

export interface LiveRules {
  declarations: string[];
  chains: string[];
  /** Rules of the raw-priority output chain: leave live connections untracked, counting new ones. */
  rawOut: AroundDirect;
  /** Rules of the raw-priority prerouting chain: leave their replies untracked (all before the direct allows'). */
  rawIn: AroundDirect;
  /** The statement the SNI redirect runs before its DNAT (notes the connection); '' when none. */
  noteRedirect: string;
}

const dynamicSet = (name: string, type: string): string[] =>
  block(`set ${name}`, [`type ${type}`, `size ${LIVE_SIZE}`, 'flags dynamic,timeout', `timeout ${LIVE_TIMEOUT}`]);

/** A TCP connection's first packet. */
export const SYN_ONLY = 'tcp flags & (syn | ack) == syn';
const NOT_SYN = 'tcp flags & syn == 0';

/**
 * The live path of both families; `redirect`: the SNI redirect, when there is one; `hosts`:
 * whether there are host maps to admit new connections (the searched direct allows admit
 * theirs too, direct.ts).
 */
export function renderLive(redirect: RedirectTarget | null, hosts: boolean): LiveRules {
  const out: LiveRules = {
    declarations: [],
    chains: [],
    rawOut: { open: [], opening: [] },
    rawIn: { open: [], opening: [] },
    noteRedirect: '',
  };
  for (const family of [4, 6] as const) {
    const ip = ipKeyword(family);
    const nfproto = `meta nfproto ipv${family}`;
    const live = liveSetName(family);
    const outKey = `${ip} daddr . tcp dport`;
    const redirected = redirect !== null && redirect.family === family ? redirect : null;
    const flowKey = `${ip} daddr . tcp dport . tcp sport`;
    out.declarations.push(...dynamicSet(live, `ipv${family}_addr . inet_service`));
    const goingOut: string[] = [];
    const comingBack: string[] = [];
    if (redirected) {
      out.declarations.push(...dynamicSet(redirectedSetName(family), `ipv${family}_addr . inet_service . inet_service`));
      goingOut.push(`tcp dport ${redirected.redirectedPort} ${flowKey} @${redirectedSetName(family)} update @${redirectedSetName(family)} { ${flowKey} } return`);
      comingBack.push(`${ip} saddr ${redirected.address} tcp sport ${redirected.port} return`);
      out.noteRedirect = `update @${redirectedSetName(family)} { ${flowKey} }`;
    }
    goingOut.push(`${outKey} @${live} update @${live} { ${outKey} } notrack accept`);
    comingBack.push(`${ip} saddr . tcp sport @${live} notrack accept`);
    out.chains.push(...block(`chain live_out${family}`, goingOut), ...block(`chain live_in${family}`, comingBack));
    out.rawOut.open.push(`${nfproto} ${NOT_SYN} jump live_out${family}`);
    if (hosts) out.rawOut.opening.push(`${nfproto} ${SYN_ONLY} counter name ${outKey} map @${hostMapName(family)} ${joinLive(family)} notrack accept`);
    out.rawIn.open.push(`${nfproto} meta l4proto tcp jump live_in${family}`);
  }
  return out;
}
