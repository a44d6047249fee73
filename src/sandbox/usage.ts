// Peak CPU and memory of the sandbox (CMD and every descendant), sampled with pidusage.
import { readdirSync, readFileSync } from 'node:fs';
import pidusage from 'pidusage';
import type { ResourcePeak } from './summary.js';

/** Parent pid from /proc/<pid>/stat text (the field after the parenthesised command). Pure. */
export function parentPidOf(statText: string): number | null {
  const close = statText.lastIndexOf(')');
  if (close < 0) return null;
  const fields = statText.slice(close + 2).split(' ');
  const ppid = Number(fields[1]);
  return Number.isInteger(ppid) ? ppid : null;
}

/** `root` and all its descendants, from one pass over /proc. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let ppid: number | null = null;
    try {
      ppid = parentPidOf(readFileSync(`/proc/${entry}/stat`, 'utf8'));
    } catch {
      continue; // exited meanwhile
    }
    if (ppid === null) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0 && out.length < 100_000) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

export interface UsageSampler {
  /** Takes one more sample now (e.g. just before CMD ends). */
  sample(): Promise<void>;
  stop(): Promise<ResourcePeak>;
}

export function startUsageSampler(rootPid: number, intervalMs = 250): UsageSampler {
  const peak: ResourcePeak = { cpuPercent: 0, memoryBytes: 0, samples: 0 };
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const sampleOnce = async (): Promise<void> => {
    const pids = processTree(rootPid);
    if (pids.length === 0) return;
    // One call per pid: a process that exits mid-sample must not spoil the others.
    const results = await Promise.allSettled(pids.map((pid) => pidusage(pid)));
    let cpu = 0;
    let memory = 0;
    for (const result of results) {
      if (result.status !== 'fulfilled') continue;
      cpu += result.value.cpu;
      memory += result.value.memory;
    }
    if (memory === 0) return;
    peak.samples++;
    peak.cpuPercent = Math.max(peak.cpuPercent, cpu);
    peak.memoryBytes = Math.max(peak.memoryBytes, memory);
  };
  const sample = (): Promise<void> => (running = running.then(sampleOnce));
  const timer = setInterval(() => {
    if (!stopped) void sample();
  }, intervalMs);
  timer.unref();
  return {
    sample,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      pidusage.clear();
      return peak;
    },
  };
}
