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

/**
 * CPU time in clock ticks from /proc/<pid>/stat text: utime + stime + cutime + cstime, so the
 * time of children already reaped still counts (short-lived programs between samples). Pure.
 */
export function cpuTicksOf(statText: string): number {
  const close = statText.lastIndexOf(')');
  if (close < 0) return 0;
  const fields = statText.slice(close + 2).split(' ');
  // fields[0] is the state (field 3): utime is field 14, so index 11; then stime, cutime, cstime.
  return [11, 12, 13, 14].reduce((sum, i) => sum + (Number(fields[i]) || 0), 0);
}

/** `root` and all its descendants, from one pass over /proc, with their CPU ticks. */
export function processTree(root: number): { pids: number[]; cpuTicks: number } {
  const children = new Map<number, number[]>();
  const ticks = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const ppid = parentPidOf(text);
    if (ppid === null) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
    ticks.set(Number(entry), cpuTicksOf(text));
  }
  const pids: number[] = [];
  let cpuTicks = 0;
  if (!ticks.has(root)) return { pids, cpuTicks };
  const queue = [root];
  while (queue.length > 0 && pids.length < 100_000) {
    const pid = queue.shift()!;
    pids.push(pid);
    cpuTicks += ticks.get(pid) ?? 0;
    queue.push(...(children.get(pid) ?? []));
  }
  return { pids, cpuTicks };
}

/** Linux reports process times in USER_HZ ticks, 100 per second on every mainstream build. */
const TICKS_PER_SECOND = 100;

export interface UsageSampler {
  /** Takes one more sample now (e.g. just before CMD ends). */
  sample(): Promise<void>;
  stop(): Promise<ResourcePeak>;
}

export function startUsageSampler(rootPid: number, intervalMs = 200): UsageSampler {
  const peak: ResourcePeak = { cpuPercent: 0, memoryBytes: 0, samples: 0 };
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  let previous: { at: number; cpuTicks: number } | undefined;
  const sampleOnce = async (): Promise<void> => {
    const at = performance.now();
    const { pids, cpuTicks } = processTree(rootPid);
    if (pids.length === 0) return;
    // CPU over the tree since the last sample (reaped children included); pidusage's per-process
    // figures miss programs that start and end between two samples.
    let treeCpu = 0;
    if (previous !== undefined && at > previous.at) {
      treeCpu = (Math.max(0, cpuTicks - previous.cpuTicks) / TICKS_PER_SECOND / ((at - previous.at) / 1000)) * 100;
    }
    previous = { at, cpuTicks };
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
    peak.cpuPercent = Math.max(peak.cpuPercent, cpu, treeCpu);
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
