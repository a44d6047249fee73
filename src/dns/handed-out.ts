// What the DNS proxy has handed out: which names each address was given for, and which host-map
// elements each name holds. Pure (no clock, no I/O).
//
// A name keeps at most `maxAddressesPerName` addresses of each family (A and AAAA answers come
// separately and must not push each other out); answering a new one evicts the oldest,
// and the elements only that address held are returned for removal (an element another name
// still holds stays). The book itself is bounded: past `maxNames`, the least recently
// answered name is forgotten (its elements are left to expire by their timeouts).
import type { HostElement } from '../nft/set-feeder.js';

const elementKey = (e: HostElement): string => `${e.endpoint}|${e.address}|${e.port}`;

interface NameEntry {
  name: string;
  /** Address → elements it holds for this name; insertion order = oldest first. */
  addresses: Map<string, HostElement[]>;
}

export interface RecordResult {
  /** Addresses of the answer this name keeps (at most the per-name limit). */
  kept: string[];
  /** Elements no name holds any more: let go of them in the kernel. */
  release: HostElement[];
}

export class HandedOutBook {
  /** `family name` → entry, least recently answered first. */
  private readonly names = new Map<string, NameEntry>();
  /** Address → names it was handed out for (most recent last). */
  private readonly byAddress = new Map<string, string[]>();
  /** Element key → holders (`family name`) of it. */
  private readonly holders = new Map<string, Set<string>>();

  constructor(
    private readonly maxAddressesPerName: number,
    private readonly maxNames = 100_000,
  ) {
    if (!Number.isInteger(maxAddressesPerName) || maxAddressesPerName < 1) {
      throw new RangeError('maxAddressesPerName must be a positive integer');
    }
  }

  /**
   * Records an answer for `name`: its addresses in answer order (only the first
   * `maxAddressesPerName` are kept) and the host-map elements each feeds (`elementsOf`).
   */
  record(name: string, addresses: string[], elementsOf: (address: string) => HostElement[], family: 4 | 6 = 4): RecordResult {
    const kept = [...new Set(addresses)].slice(0, this.maxAddressesPerName);
    const holder = `${family} ${name}`;
    let entry = this.names.get(holder);
    if (entry === undefined) {
      entry = { name, addresses: new Map() };
    } else {
      this.names.delete(holder); // re-inserted below: most recently answered last
    }
    this.names.set(holder, entry);
    const release: HostElement[] = [];
    // Walk the answer backwards so its first address ends up the most recent.
    for (const address of [...kept].reverse()) {
      const old = entry.addresses.get(address) ?? [];
      entry.addresses.delete(address);
      const elements = elementsOf(address);
      for (const e of elements) this.hold(elementKey(e), holder);
      const now = new Set(elements.map(elementKey));
      for (const e of old) if (!now.has(elementKey(e))) this.letGo(e, holder, release);
      entry.addresses.set(address, elements);
      this.link(address, name);
    }
    while (entry.addresses.size > this.maxAddressesPerName) {
      const [oldest, elements] = entry.addresses.entries().next().value as [string, HostElement[]];
      entry.addresses.delete(oldest);
      for (const e of elements) this.letGo(e, holder, release);
      this.unlink(oldest, name);
    }
    while (this.names.size > this.maxNames) this.forgetOldestName();
    return { kept, release };
  }

  /** Names an address was handed out for, oldest first (empty when never). */
  namesOf(address: string): string[] {
    return [...(this.byAddress.get(address) ?? [])];
  }

  /** Addresses a name currently holds, oldest first. */
  addressesOf(name: string, family: 4 | 6 = 4): string[] {
    return [...(this.names.get(`${family} ${name}`)?.addresses.keys() ?? [])];
  }

  /** Drops every element hold (the maps were replaced); names of addresses stay known. */
  clearElements(): void {
    this.holders.clear();
    for (const entry of this.names.values()) for (const address of entry.addresses.keys()) entry.addresses.set(address, []);
  }

  private hold(key: string, name: string): void {
    let set = this.holders.get(key);
    if (set === undefined) this.holders.set(key, (set = new Set()));
    set.add(name);
  }

  private letGo(e: HostElement, name: string, release: HostElement[]): void {
    const key = elementKey(e);
    const set = this.holders.get(key);
    if (set === undefined) return;
    set.delete(name);
    if (set.size === 0) {
      this.holders.delete(key);
      release.push(e);
    }
  }

  private link(address: string, name: string): void {
    const list = (this.byAddress.get(address) ?? []).filter((n) => n !== name);
    list.push(name);
    this.byAddress.set(address, list);
  }

  private unlink(address: string, name: string): void {
    const list = (this.byAddress.get(address) ?? []).filter((n) => n !== name);
    if (list.length === 0) this.byAddress.delete(address);
    else this.byAddress.set(address, list);
  }

  private forgetOldestName(): void {
    const [holder, entry] = this.names.entries().next().value as [string, NameEntry];
    this.names.delete(holder);
    for (const [address, elements] of entry.addresses) {
      for (const e of elements) this.holders.get(elementKey(e))?.delete(holder);
      for (const e of elements) if (this.holders.get(elementKey(e))?.size === 0) this.holders.delete(elementKey(e));
      this.unlink(address, entry.name);
    }
  }
}
