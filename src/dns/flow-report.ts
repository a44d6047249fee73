// Reads the portcullis table (counters and host-map elements) and turns it into `flow` audit
// events (the I/O edge of flows.ts): after a run, or whenever asked.
import { execa } from 'execa';
import type { AuditEvent } from '../audit/events.js';
import { parseCounters } from '../nft/counters.js';
import { NFT_FAMILY, NFT_TABLE, endpointIdOfCounter, hostMapName, kernelEndpoints } from '../nft/names.js';
import type { Policy } from '../policy/types.js';
import { flowEvents, type AddressNamer, type HostMember } from './flows.js';

interface JsonMap {
  family?: unknown;
  table?: unknown;
  name?: unknown;
  elem?: unknown;
}

const HOST_MAPS = new Set([hostMapName(4), hostMapName(6)]);

/** The member of a map element's key: `{concat: [addr, port]}`, or wrapped with its timeout. */
function memberOf(key: unknown): HostMember | null {
  const wrapped = (key as { elem?: { val?: unknown } })?.elem?.val ?? key;
  const concat = (wrapped as { concat?: unknown })?.concat;
  if (!Array.isArray(concat) || typeof concat[0] !== 'string' || typeof concat[1] !== 'number') return null;
  return { address: concat[0], port: concat[1] };
}

/** Elements of the table's host maps per owning endpoint id, from `nft -j list table`. Pure. */
export function parseHostMembers(json: string): Map<string, HostMember[]> {
  const doc = JSON.parse(json) as { nftables?: unknown };
  const out = new Map<string, HostMember[]>();
  if (!Array.isArray(doc.nftables)) return out;
  for (const item of doc.nftables as Array<{ map?: JsonMap }>) {
    const m = item?.map;
    if (!m || m.family !== NFT_FAMILY || m.table !== NFT_TABLE || !HOST_MAPS.has(m.name as string) || !Array.isArray(m.elem)) continue;
    // An element is `[key, "allow_ID"]`: the owning endpoint's counter.
    for (const raw of m.elem as unknown[]) {
      if (!Array.isArray(raw)) continue;
      const member = memberOf(raw[0]);
      const id = typeof raw[1] === 'string' ? endpointIdOfCounter(raw[1]) : null;
      if (member === null || id === null) continue;
      const list = out.get(id) ?? [];
      list.push(member);
      out.set(id, list);
    }
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
  return flowEvents(parseCounters(json), kernelEndpoints(options.policies), options.names, parseHostMembers(json));
}
