// The SSRF decision: which resolved addresses the proxy refuses to dial. The address classes
// and the canonical form are src/net's; what is proxy policy is here: an endpoint's
// `allowed_ips` exempts an address from its class, never from being the host itself or one of
// the proxy's own addresses. Pure.
import { canonicalAddress as canonicalOrNull } from '../net/address.js';
import { addressFacts, forbiddenAddressClass } from '../net/classes.js';

export { forbiddenAddressClass };

/** Canonical spelling (src/net/address.ts), or the text itself when it is not an address. */
export function canonicalAddress(address: string): string {
  return canonicalOrNull(address) ?? address;
}

export interface SsrfVerdict {
  ok: boolean;
  /** The first refused address and its class. */
  address?: string;
  cls?: string;
}

// The own-address sets a proxy passes are built once per listen, so their widening is cached.
const widenedOwn = new WeakMap<ReadonlySet<string>, ReadonlySet<string>>();

/** Own addresses with the IPv4 each carries (a proxy listening on ::ffff:127.0.0.1 owns 127.0.0.1). */
function widened(own: ReadonlySet<string>): ReadonlySet<string> {
  let out = widenedOwn.get(own);
  if (out === undefined) {
    const set = new Set<string>();
    for (const text of own) for (const form of addressFacts(text)?.sameHost ?? [text]) set.add(form);
    widenedOwn.set(own, set);
    out = set;
  }
  return out;
}

/**
 * Checks every address: refused when it is (or carries) one of the proxy's own addresses or an
 * address no policy may open (always), or is in a forbidden class (unless `explicit` says the
 * policy named it in allowed_ips). The classes are src/net's (`unreachableClass`: the kernel's
 * fence applies the same rule), read from facts worked out once per address.
 */
export function checkAddresses(addresses: string[], ownAddresses: ReadonlySet<string>, explicit: boolean): SsrfVerdict {
  const own = widened(ownAddresses);
  for (const address of addresses) {
    const facts = addressFacts(address);
    if (facts === null) return { ok: false, address, cls: 'invalid' };
    const canonical = facts.sameHost[0]!;
    if (facts.sameHost.some((form) => own.has(form))) return { ok: false, address: canonical, cls: 'proxy-own-address' };
    // allowed_ips can never name the never-declarable addresses (the loader refuses them): the
    // check stands on its own should a policy reach the engine some other way.
    const cls = explicit ? facts.hostScoped : facts.cls;
    if (cls !== null) return { ok: false, address: canonical, cls };
  }
  return { ok: true };
}
