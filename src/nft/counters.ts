// Named counters of the portcullis table, from the JSON of `nft -j list ruleset`. Pure.
import { NFT_FAMILY, NFT_TABLE } from './names.js';

export interface CounterReading {
  name: string;
  comment: string;
  packets: number;
  bytes: number;
}

interface JsonCounter {
  family?: unknown;
  table?: unknown;
  name?: unknown;
  comment?: unknown;
  packets?: unknown;
  bytes?: unknown;
}

/** Counters of `table inet portcullis`, sorted by name; anything else in the ruleset is ignored. */
export function parseCounters(json: string): CounterReading[] {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new Error(`nft returned JSON that does not parse: ${(err as Error).message}`);
  }
  const items = (doc as { nftables?: unknown }).nftables;
  if (!Array.isArray(items)) throw new Error('nft JSON has no "nftables" array');
  const out: CounterReading[] = [];
  for (const item of items as Array<{ counter?: JsonCounter }>) {
    const c = item?.counter;
    if (!c || c.family !== NFT_FAMILY || c.table !== NFT_TABLE || typeof c.name !== 'string') continue;
    out.push({
      name: c.name,
      comment: typeof c.comment === 'string' ? c.comment : '',
      packets: Number(c.packets ?? 0),
      bytes: Number(c.bytes ?? 0),
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
