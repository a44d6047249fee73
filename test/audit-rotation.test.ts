// Log rotation with the real `portcullis proxy` CLI: the audit file moved (with SIGUSR1, as
// logrotate's postrotate sends, and without) or removed while requests keep coming. Every request
// has its own host, and its event ends up in exactly one of the files: none lost, none twice.
import { existsSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { auditLines, deniedConnect, startCliProxy, stopCliProxy, waitFor, type CliProxy } from './support/audit-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'pc-audit-rotate-'));
const running: CliProxy[] = [];

afterEach(async () => {
  for (const proxy of running.splice(0)) {
    proxy.child.kill('SIGKILL');
    await Promise.race([proxy.exited, new Promise((r) => setTimeout(r, 5_000))]);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Several clients at once, each sending denied CONNECTs until stopped; the hosts decided. */
function traffic(port: number, label: string, clients = 4): { stop(): Promise<string[]>; count(): number } {
  const hosts: string[] = [];
  let running = true;
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; running && i < 5_000; i++) {
      const host = `${label}-${c}-${i}.invalid`;
      const res = await deniedConnect(port, host);
      if (res.status !== 403) throw new Error(`${host}: ${res.status} ${res.raw}`);
      hosts.push(host);
    }
  });
  return {
    count: () => hosts.length,
    async stop() {
      running = false;
      await Promise.all(loops);
      return hosts;
    },
  };
}

function hostsIn(file: string): string[] {
  return auditLines(file)
    .filter((e) => e.kind === 'connect')
    .map((e) => String(e.host));
}

/** Each host once across the files, and every host sent. */
function expectExactlyOnce(sent: string[], files: string[]): void {
  const seen = files.flatMap(hostsIn);
  expect(new Set(seen).size, 'an event was written twice').toBe(seen.length);
  expect([...seen].sort()).toEqual([...sent].sort());
}

async function proxyOn(name: string): Promise<{ proxy: CliProxy; file: string }> {
  const file = join(dir, `${name}.jsonl`);
  const proxy = await startCliProxy(dir, file);
  running.push(proxy);
  return { proxy, file };
}

describe('audit log rotation (the real CLI)', () => {
  it('SIGUSR1 after a move reopens the file at once; events go to the old file or the new one, each exactly once', async () => {
    const { proxy, file } = await proxyOn('usr1');
    const load = traffic(proxy.port, 'usr1');
    await waitFor('some traffic', () => load.count() >= 200);
    renameSync(file, `${file}.1`);
    proxy.child.kill('SIGUSR1');
    const atSignal = load.count();
    await waitFor('more traffic after the rotation', () => load.count() >= atSignal + 200);
    const sent = await load.stop();
    await waitFor('every event written', () => hostsIn(`${file}.1`).length + hostsIn(file).length >= sent.length);

    // With nothing more to write, SIGUSR1 alone opens a new file at the path.
    renameSync(file, `${file}.2`);
    proxy.child.kill('SIGUSR1');
    await waitFor('the file reopened on SIGUSR1', () => existsSync(file), 5_000);
    expect(proxy.child.exitCode).toBeNull();

    expect(await stopCliProxy(proxy)).toBe(0);
    expectExactlyOnce(sent, [`${file}.1`, `${file}.2`, file]);
    // Lines still in the sink's batch (at most 20 ms of them) when the file moved go to the new
    // file: the old one holds most of the first 200, not necessarily all.
    expect(hostsIn(`${file}.1`).length).toBeGreaterThanOrEqual(150);
    expect(hostsIn(`${file}.2`).length).toBeGreaterThanOrEqual(150);
    expect(hostsIn(file)).toHaveLength(0);
  });

  it('a move without a signal is noticed at the next batch: nothing lost, nothing twice', async () => {
    const { proxy, file } = await proxyOn('moved');
    const load = traffic(proxy.port, 'moved');
    await waitFor('some traffic', () => load.count() >= 200);
    renameSync(file, `${file}.1`);
    const atMove = load.count();
    await waitFor('more traffic after the move', () => load.count() >= atMove + 200);
    const sent = await load.stop();
    expect(await stopCliProxy(proxy)).toBe(0);
    expectExactlyOnce(sent, [`${file}.1`, file]);
    expect(hostsIn(file).length).toBeGreaterThanOrEqual(150);
  });

  it('a removed file is created again at the next batch, with every event that came after the removal', async () => {
    const { proxy, file } = await proxyOn('removed');
    const before = await traffic(proxy.port, 'before', 1);
    await waitFor('some traffic', () => before.count() >= 50);
    const first = await before.stop();
    await waitFor('the first events written', () => hostsIn(file).length === first.length);
    rmSync(file);
    const after = traffic(proxy.port, 'after');
    await waitFor('traffic after the removal', () => after.count() >= 200);
    const sent = await after.stop();
    expect(await stopCliProxy(proxy)).toBe(0);
    expectExactlyOnce(sent, [file]);
  });
});
