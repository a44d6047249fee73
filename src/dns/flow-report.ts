// Reads the portcullis table (counters and host-set elements) and turns it into `flow` audit
// events (the I/O edge of flows.ts): after a run, or whenever asked.
import { execa } from 'execa';
import type { AuditEvent } from '../audit/events.js';
import { parseCounters } from '../nft/counters.js';
import { NFT_FAMILY, NFT_TABLE, kernelEndpoints } from '../nft/names.js';
import type { Policy } from '../policy/types.js';
import { flowEvents, type AddressNamer, type SetMember } from './flows.js';

interface JsonSet {
  family?: unknown;
  table?: unknown;
  name?: unknown;
  elem?: unknown;
}

/** Elements of the table's sets, from `nft -j list table`. Pure. */
export function parseSetMembers(json: string): Map<string, SetMember[]> {
  const doc = JSON.parse(json) as { nftables?: unknown };
  const out = new Map<string, SetMember[]>();
  if (!Array.isArray(doc.nftables)) return out;
  for (const item of doc.nftables as Array<{ set?: JsonSet }>) {
    const s = item?.set;
    if (!s || s.family !== NFT_FAMILY || s.table !== NFT_TABLE || typeof s.name !== 'string' || !Array.isArray(s.elem)) continue;
    const members: SetMember[] = [];
    for (const raw of s.elem as unknown[]) {
      // An element is `{concat: [addr, port]}`, or wrapped as `{elem: {val: {concat: …}, timeout, expires}}`.
      const wrapped = (raw as { elem?: { val?: unknown } })?.elem?.val ?? raw;
      const concat = (wrapped as { concat?: unknown })?.concat;
      if (!Array.isArray(concat) || typeof concat[0] !== 'string' || typeof concat[1] !== 'number') continue;
      members.push({ address: concat[0], port: concat[1] });
    }
    out.set(s.name, members);
  }
  return out;
}

export interface FlowReportOptions {
  netns?: string;
  policies: Policy[];
  names: AddressNamer;
}

/** Flow events for the table as it stands now (empty when it is not loaded). */
export async function readFlowEvents(options: FlowReportOptions): Promise<AuditEvent[]> {
  if (options.netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(options.netns)) {
    throw new Error(`"${options.netns}" is not a network namespace name`);
  }
  const args = ['-j', 'list', 'table', NFT_FAMILY, NFT_TABLE];
  const [file, argv] = options.netns === undefined ? ['nft', args] : ['ip', ['netns', 'exec', options.netns, 'nft', ...args]];
  const r = await execa(file, argv, { reject: false, timeout: 30_000 });
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(String(r.stderr))) return [];
    throw new Error(`cannot list the nft table: ${String(r.stderr).trim() || r.message}`);
  }
  const json = String(r.stdout);
  return flowEvents(parseCounters(json), kernelEndpoints(options.policies), options.names, parseSetMembers(json));
}
