// The audit file is created 0600 and never opened through a symbolic link (a link planted at the
// path must not make root append to the file it points to), nor when it is not a regular file or
// belongs to someone else. And the sink's two states, with a target that fails on purpose.
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { openAuditSink, StreamAuditSink, type AuditHealth } from '../src/audit/sink.js';
import { AuditWriteError, type AuditTarget } from '../src/audit/target.js';
import { cli } from './support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'pc-audit-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CANARY = 'root:x:0:0:canary\n';

function canary(name: string): { target: string; link: string } {
  const target = join(dir, `${name}-canary`);
  writeFileSync(target, CANARY);
  const link = join(dir, `${name}.jsonl`);
  symlinkSync(target, link);
  return { target, link };
}

/** Opens, writes one event and closes; the error of any step, or null. */
async function tryAudit(path: string): Promise<Error | null> {
  try {
    const sink = openAuditSink(path);
    sink.emit({ kind: 'connect', host: 'planted.example', port: 443 });
    await sink.close();
    return null;
  } catch (err) {
    return err as Error;
  }
}

describe('the audit file', () => {
  it('is created with mode 0600 whatever the umask', async () => {
    const file = join(dir, 'mode.jsonl');
    const old = process.umask(0o000);
    try {
      expect(await tryAudit(file)).toBeNull();
    } finally {
      process.umask(old);
    }
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toContain('planted.example');
  });

  it('keeps the mode of an existing file of ours (e.g. logrotate create 0640) and appends to it', async () => {
    const file = join(dir, 'existing.jsonl');
    writeFileSync(file, '{"kind":"reload"}\n', { mode: 0o640 });
    expect(await tryAudit(file)).toBeNull();
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean)).toHaveLength(2);
  });

  it('is never opened through a symbolic link: a clear error, and the file it points to is untouched', async () => {
    const { target, link } = canary('link');
    const err = await tryAudit(link);
    expect(err?.message).toMatch(/audit file .*link\.jsonl is a symbolic link: refusing to follow it/);
    expect(readFileSync(target, 'utf8')).toBe(CANARY);
    // A dangling link must not make root create the file it names either.
    const nowhere = join(dir, 'would-be-created');
    symlinkSync(nowhere, join(dir, 'dangling.jsonl'));
    expect((await tryAudit(join(dir, 'dangling.jsonl')))?.message).toMatch(/is a symbolic link/);
    expect(existsSync(nowhere)).toBe(false);
  });

  it('refuses what is not a regular file (a FIFO, without hanging) and a file that belongs to someone else', async () => {
    const fifo = join(dir, 'fifo.jsonl');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    expect((await tryAudit(fifo))?.message).toMatch(/fifo\.jsonl/);
    const theirs = join(dir, 'theirs.jsonl');
    writeFileSync(theirs, '', { mode: 0o666 });
    chownSync(theirs, 65534, 65534);
    expect((await tryAudit(theirs))?.message).toMatch(/belongs to uid 65534/);
    expect(readFileSync(theirs, 'utf8')).toBe('');
  });

  it('portcullis proxy --audit LINK exits 2 at start with the reason; the link target is untouched', async () => {
    const { target, link } = canary('cli');
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nnetwork_policies: {}\n');
    const child = spawn(process.execPath, [join(import.meta.dirname, '../dist/cli/main.js'), 'proxy', '--policy', policy, '--listen', '127.0.0.1:0', '--audit', link], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await Promise.race([
      new Promise<number | null>((resolve) => child.once('exit', resolve)),
      new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 20_000)),
    ]);
    child.kill('SIGKILL');
    expect(code).toBe(2);
    expect(stderr).toMatch(/portcullis proxy: audit file .* is a symbolic link/);
    expect(readFileSync(target, 'utf8')).toBe(CANARY);
  });

  it('portcullis run refuses an audit symlink (exit 2, before anything starts) and checks --audit-failure', async () => {
    const { target, link } = canary('run');
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nnetwork_policies: {}\n');
    const refused = await cli('run', '--policy', policy, '--audit', link, '--', 'true');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/portcullis run: audit file .* is a symbolic link/);
    expect(readFileSync(target, 'utf8')).toBe(CANARY);
    const bad = await cli('run', '--policy', policy, '--audit-failure', 'sometimes', '--', 'true');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"sometimes" must be closed or open');
  });
});

/** A target that fails with ENOSPC while `full` is set, after keeping the first whole line. */
class FlakyTarget implements AuditTarget {
  full = false;
  text = '';
  writes = 0;
  write(data: Buffer): Promise<void> {
    this.writes++;
    if (!this.full) {
      this.text += data.toString();
      return Promise.resolve();
    }
    const kept = data.indexOf(0x0a) + 1;
    this.text += data.subarray(0, kept).toString();
    return Promise.reject(new AuditWriteError(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }), kept));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const hosts = (target: FlakyTarget): string[] =>
  target.text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent)
    .map((e) => (e.kind === 'audit_gap' ? `gap:${e.lost}` : String(e.host)));

describe('the audit sink when writes fail', () => {
  it('holds what was queued, counts what comes while failing, and on recovery writes the held lines, then audit_gap', async () => {
    const target = new FlakyTarget();
    const sink = new StreamAuditSink(target);
    const health: AuditHealth[] = [];
    sink.onHealthChange((h) => health.push(h));
    target.full = true;
    for (const host of ['a', 'b', 'c']) sink.emit({ kind: 'connect', host });
    for (let i = 0; i < 100 && sink.healthy(); i++) await new Promise((r) => setTimeout(r, 5));
    expect(sink.healthy()).toBe(false);
    expect(health).toEqual([expect.objectContaining({ healthy: false, cause: 'ENOSPC' })]);
    for (const host of ['x', 'y']) sink.emit({ kind: 'connect', host });
    // Retried while full: still failing, nothing more lost or written twice.
    await new Promise((r) => setTimeout(r, 600));
    expect(sink.healthy()).toBe(false);
    expect(sink.health().lost).toBe(2);
    target.full = false;
    for (let i = 0; i < 200 && !sink.healthy(); i++) await new Promise((r) => setTimeout(r, 5));
    expect(sink.healthy()).toBe(true);
    sink.emit({ kind: 'connect', host: 'd' });
    await sink.close();
    expect(hosts(target)).toEqual(['a', 'b', 'c', 'gap:2', 'd']);
    expect(health.at(-1)).toMatchObject({ healthy: true, lost: 2 });
  });

  it('close() while failing gives up after one more try instead of hanging', async () => {
    const target = new FlakyTarget();
    const sink = new StreamAuditSink(target);
    target.full = true;
    sink.emit({ kind: 'connect', host: 'a' });
    sink.emit({ kind: 'connect', host: 'b' });
    for (let i = 0; i < 100 && sink.healthy(); i++) await new Promise((r) => setTimeout(r, 5));
    sink.emit({ kind: 'connect', host: 'lost' });
    await sink.close();
    expect(sink.health()).toMatchObject({ healthy: false, lost: 1 });
    // The first try kept 'a'; the last one (in close) kept 'b' and failed on the rest.
    expect(hosts(target)).toEqual(['a', 'b']);
  });
});
