// Who holds each `address . port` of the host maps, and until when. Pure (the clock is passed in).
//
// The kernel keeps one element per `address . port` and family, naming one endpoint's counter;
// several hostname endpoints may allow the same one (a name and a wildcard covering it, say).
// Each such endpoint holds the element until its answer's timeout runs out. The element must
// live as long as the longest hold, and belongs to the first holder in policy order, so that the
// same traffic always counts on the same endpoint whatever order the answers came in.
import { compareEndpointIds } from './names.js';

export class HostHolds {
  /** Slot (`address|port`) → endpoint id → until when it holds the slot (ms since epoch). */
  private readonly slots = new Map<string, Map<string, number>>();

  get size(): number {
    return this.slots.size;
  }

  /** `endpoint` holds `slot` at least until `until`. */
  hold(slot: string, endpoint: string, until: number): void {
    let holders = this.slots.get(slot);
    if (holders === undefined) this.slots.set(slot, (holders = new Map()));
    holders.set(endpoint, Math.max(holders.get(endpoint) ?? 0, until));
  }

  /** `endpoint` lets go of `slot` before its time (the name no longer holds the address). */
  release(slot: string, endpoint: string): void {
    const holders = this.slots.get(slot);
    holders?.delete(endpoint);
    if (holders?.size === 0) this.slots.delete(slot);
  }

  /** The first holder in policy order whose hold has not run out, or null when none has. */
  owner(slot: string, now: number): string | null {
    let first: string | null = null;
    for (const endpoint of this.live(slot, now).keys()) {
      if (first === null || compareEndpointIds(endpoint, first) < 0) first = endpoint;
    }
    return first;
  }

  /** When the last hold on `slot` runs out (0 when none is left). */
  lastUntil(slot: string, now: number): number {
    let last = 0;
    for (const until of this.live(slot, now).values()) last = Math.max(last, until);
    return last;
  }

  /** Forgets every slot whose holds have all run out. */
  prune(now: number): void {
    for (const slot of [...this.slots.keys()]) this.live(slot, now);
  }

  clear(): void {
    this.slots.clear();
  }

  /** The unexpired holders of a slot; expired ones are dropped on the way. */
  private live(slot: string, now: number): Map<string, number> {
    const holders = this.slots.get(slot);
    if (holders === undefined) return new Map();
    for (const [endpoint, until] of holders) if (until <= now) holders.delete(endpoint);
    if (holders.size === 0) this.slots.delete(slot);
    return holders;
  }
}
