// readProcText against readFileSync on real procfs files: a short one, a command line longer than
// its buffer, and a process that is gone.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readProcText } from '../src/identity/proc-read.js';

describe('readProcText', () => {
  it('reads what readFileSync reads, short files and long command lines alike', async () => {
    const long = 'x'.repeat(40_000);
    // bash keeps its argv (and waits, asleep, for its sleep child). Its own process group, so
    // that the sleep goes with it at the end.
    const child = spawn('bash', ['-c', 'sleep 30; true', long, 'é-last'], { stdio: 'ignore', detached: true });
    try {
      await new Promise((resolve) => child.once('spawn', resolve));
      const asleep = (): boolean => readFileSync(`/proc/${child.pid}/stat`, 'latin1').includes(') S ');
      for (let i = 0; i < 300 && !asleep(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(asleep()).toBe(true);
      // A sleeping process's stat and status do not change between two reads.
      for (const file of ['stat', 'status']) expect(readProcText(`/proc/${child.pid}/${file}`, 'latin1')).toBe(readFileSync(`/proc/${child.pid}/${file}`, 'latin1'));
      const text = readProcText(`/proc/${child.pid}/cmdline`, 'utf8');
      expect(text.length).toBeGreaterThan(40_000);
      expect(text).toBe(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8'));
      expect(text.split('\0').slice(0, 5)).toEqual(['bash', '-c', 'sleep 30; true', long, 'é-last']);
    } finally {
      process.kill(-child.pid!, 'SIGKILL');
    }
  });

  it('throws ENOENT for a process that does not exist', () => {
    expect(() => readProcText('/proc/4194999/stat', 'latin1')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });
});
