// A full audit disk, for real: the audit file on a 64 KiB tmpfs mounted for the test, the real
// `portcullis proxy` CLI, and denied CONNECTs (one `connect` event each) until writes fail with
// ENOSPC. The proxy stays up; by default new connections get 503 audit_unavailable, with
// `--audit-failure open` they are served; once space is freed it recovers without a restart and
// writes an audit_gap event, and every served request is either in the file or counted as lost.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { auditLines, deniedConnect, idleConnection, startCliProxy, stopCliProxy, waitFor, type CliProxy } from './support/audit-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'pc-audit-full-'));
const running: CliProxy[] = [];
const mounts: string[] = [];

/** A fresh 64 KiB tmpfs with a filler file leaving about `freeKiB` free. */
function smallDisk(name: string, freeKiB: number): { mnt: string; filler: string } {
  const mnt = join(dir, name);
  mkdirSync(mnt);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', mnt], { encoding: 'utf8' });
  if (mounted.status !== 0) throw new Error(`mount tmpfs: ${mounted.stderr}`);
  mounts.push(mnt);
  const filler = join(mnt, 'filler');
  writeFileSync(filler, Buffer.alloc((64 - freeKiB) * 1024, 0x66));
  return { mnt, filler };
}

afterEach(async () => {
  for (const proxy of running.splice(0)) {
    proxy.child.kill('SIGKILL');
    await Promise.race([proxy.exited, new Promise((r) => setTimeout(r, 5_000))]);
  }
});

afterAll(() => {
  for (const mnt of mounts) {
    if (spawnSync('umount', [mnt]).status !== 0) spawnSync('umount', ['-l', mnt]);
  }
  rmSync(dir, { recursive: true, force: true });
});

beforeAll(() => {
  expect(process.getuid?.(), 'mounting a tmpfs needs root').toBe(0);
});

interface Tally {
  /** Requests the proxy decided (403 policy_denied): one `connect` event each. */
  served: number;
  unavailable: number;
}

async function request(proxy: CliProxy, tally: Tally, host: string): Promise<number> {
  const res = await deniedConnect(proxy.port, host);
  if (res.status === 403) {
    expect(JSON.parse(res.body).error).toBe('policy_denied');
    tally.served++;
  } else if (res.status === 503) {
    expect(JSON.parse(res.body)).toMatchObject({ error: 'audit_unavailable' });
    expect(res.headers['x-portcullis-decision']).toBe('error');
    tally.unavailable++;
  } else {
    throw new Error(`unexpected answer ${res.status}: ${res.raw}`);
  }
  return res.status;
}

/** Every event in the file plus the lost ones is every request served; nothing else, no torn line. */
function expectAccounted(file: string, tally: Tally): AuditEvent {
  const lines = auditLines(file);
  const gaps = lines.filter((e) => e.kind === 'audit_gap');
  expect(gaps).toHaveLength(1);
  const gap = gaps[0]!;
  const connects = lines.filter((e) => e.kind === 'connect');
  expect(connects.length + lines.filter((e) => e.kind === 'audit_gap').length).toBe(lines.length);
  expect(connects.length + (gap.lost as number)).toBe(tally.served);
  expect(gap.cause).toBe('ENOSPC');
  expect(Date.parse(gap.until as string)).toBeGreaterThanOrEqual(Date.parse(gap.since as string));
  expect(gap.duration_ms).toBe(Date.parse(gap.until as string) - Date.parse(gap.since as string));
  return gap;
}

describe('a full audit disk (64 KiB tmpfs, the real CLI)', () => {
  it('by default: stays up, refuses new connections with 503 audit_unavailable, recovers when space is freed and writes an audit_gap with the lost count', async () => {
    const { mnt, filler } = smallDisk('closed', 8);
    const file = join(mnt, 'audit.jsonl');
    const proxy = await startCliProxy(dir, file);
    running.push(proxy);
    const tally: Tally = { served: 0, unavailable: 0 };
    // Accepted now, their requests sent while the audit fails: their events are the lost ones.
    const early = await Promise.all([1, 2, 3].map(() => idleConnection(proxy.port)));
    let i = 0;
    while (tally.unavailable === 0 && i < 2_000) await request(proxy, tally, `fill${i++}.invalid`);
    expect(tally.unavailable, 'the disk never filled up').toBe(1);
    expect(tally.served).toBeGreaterThan(5);

    expect(proxy.child.exitCode).toBeNull();
    for (let j = 0; j < 5; j++) expect(await request(proxy, tally, `refused${j}.invalid`)).toBe(503);
    for (const [j, connection] of early.entries()) {
      expect(await connection.send(`early${j}.invalid`)).toBe(403);
      tally.served++;
    }
    await waitFor('the failure on stderr', () => proxy.stderr().includes('audit cannot be written (ENOSPC'));

    rmSync(filler);
    let recovered = false;
    for (let j = 0; j < 200 && !recovered; j++) {
      recovered = (await request(proxy, tally, `after${j}.invalid`)) === 403;
      if (!recovered) await new Promise((r) => setTimeout(r, 50));
    }
    expect(recovered, 'the proxy did not recover after space was freed').toBe(true);
    expect(proxy.child.exitCode).toBeNull();
    await waitFor('the recovery on stderr', () => proxy.stderr().includes('audit is written again'));

    expect(await stopCliProxy(proxy)).toBe(0);
    const gap = expectAccounted(file, tally);
    expect(gap.lost).toBeGreaterThanOrEqual(3);
    // The gap comes after everything written before the failure, and before what came after.
    const lines = auditLines(file);
    const at = lines.findIndex((e) => e.kind === 'audit_gap');
    expect(lines.slice(0, at).some((e) => String(e.host).startsWith('fill'))).toBe(true);
    expect(lines.slice(at + 1).every((e) => String(e.host).startsWith('after'))).toBe(true);
    expect(lines.slice(at + 1)).toHaveLength(1);
    expect(lines.some((e) => String(e.host).startsWith('early'))).toBe(false);
  });

  it('with --audit-failure open: keeps serving while the disk is full, and the gap counts what was served unrecorded', async () => {
    const { mnt, filler } = smallDisk('open', 8);
    const file = join(mnt, 'audit.jsonl');
    const proxy = await startCliProxy(dir, file, ['--audit-failure', 'open']);
    running.push(proxy);
    const tally: Tally = { served: 0, unavailable: 0 };
    let i = 0;
    while (!proxy.stderr().includes('audit cannot be written') && i < 2_000) await request(proxy, tally, `fill${i++}.invalid`);
    expect(proxy.stderr()).toContain('audit cannot be written (ENOSPC');
    expect(proxy.stderr()).toContain('--audit-failure open');

    for (let j = 0; j < 20; j++) expect(await request(proxy, tally, `during${j}.invalid`)).toBe(403);
    expect(tally.unavailable).toBe(0);
    expect(proxy.child.exitCode).toBeNull();

    rmSync(filler);
    await waitFor('the recovery on stderr', () => proxy.stderr().includes('audit is written again'), 10_000);
    expect(await request(proxy, tally, 'after.invalid')).toBe(403);
    expect(await stopCliProxy(proxy)).toBe(0);
    const gap = expectAccounted(file, tally);
    expect(gap.lost).toBeGreaterThanOrEqual(20);
    expect(auditLines(file).some((e) => String(e.host).startsWith('during'))).toBe(false);
    expect(auditLines(file).at(-1)).toMatchObject({ kind: 'connect', host: 'after.invalid' });
  });
});
