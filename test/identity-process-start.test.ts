// ProcessStartClock against real processes: the moment it gives is never before the process
// started (the fork-family check relies on that), and is close to it; unknown without procfs.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ProcessStartClock, START_UNCERTAINTY_MS } from '../src/identity/process-start.js';

describe('ProcessStartClock', () => {
  it('gives a moment no earlier than a new process started, and near it', async () => {
    const clock = new ProcessStartClock();
    for (let i = 0; i < 5; i++) {
      const before = performance.now();
      const child = spawn('sleep', ['5'], { stdio: 'ignore' });
      try {
        await new Promise((resolve) => child.once('spawn', resolve));
        const after = performance.now();
        const notBefore = clock.notBeforeStartOf(child.pid!)!;
        expect(notBefore).toBeGreaterThanOrEqual(before);
        // Within the tick of truncation and the rounding of /proc/uptime, twice over.
        expect(notBefore).toBeLessThanOrEqual(after + 2 * START_UNCERTAINTY_MS + 10);
      } finally {
        child.kill('SIGKILL');
      }
    }
  });

  it('knows nothing of a process that is gone, or without /proc/uptime', () => {
    expect(new ProcessStartClock().notBeforeStartOf(4_194_999)).toBeUndefined();
    const empty = mkdtempSync(join(tmpdir(), 'pc-noproc-'));
    try {
      expect(new ProcessStartClock(empty).notBeforeStartOf(process.pid)).toBeUndefined();
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
