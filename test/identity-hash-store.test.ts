// The on-disk store of executables' hashes, with real processes: what one run hashed, the next
// finds; a store another user could write, or a broken one, is not believed.
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HashStore } from '../src/identity/hash-store.js';
import { BinaryIntegrity } from '../src/identity/integrity.js';
import { Children, readlinkF, sha256File } from './fixtures/identity/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-hash-store-'));
const children = new Children();
afterAll(() => {
  children.killAll();
  rmSync(dir, { recursive: true, force: true });
});

/** A private copy of sleep, running: its hash is computed through /proc/<pid>/exe. */
function runningCopy(name: string): { pid: number; path: string } {
  const path = join(dir, name);
  copyFileSync(readlinkF('/usr/bin/sleep'), path);
  chmodSync(path, 0o755);
  const child = children.spawn(path, ['60']);
  return { pid: child.pid!, path };
}

describe('HashStore', () => {
  it('lets a later run find what an earlier one hashed, under the same file fingerprint only', async () => {
    const storePath = join(dir, 'store', 'hashes.json');
    const binary = runningCopy('tool-a');
    const first = new BinaryIntegrity(new HashStore(storePath));
    const firstHash = await first.check(binary.pid, binary.path);
    expect(firstHash.sha256).toBe(await sha256File(binary.path));
    expect(first.filesHashed).toBe(1);

    // Not yet written to disk, it is not there for another run; written, it is.
    const writer = new HashStore(storePath);
    const second = new BinaryIntegrity(writer);
    await second.check(binary.pid, binary.path);
    expect(second.filesHashed).toBe(1);
    writer.flush();
    expect(JSON.parse(readFileSync(storePath, 'utf8')).hashes).toBeTypeOf('object');

    const third = new BinaryIntegrity(new HashStore(storePath));
    expect(await third.check(binary.pid, binary.path)).toEqual({ sha256: firstHash.sha256 });
    expect(third.filesHashed).toBe(0);

    // Another file (another inode) with other bytes: hashed, whatever the store holds.
    const other = runningCopy('tool-b');
    const fourth = new BinaryIntegrity(new HashStore(storePath));
    await fourth.check(other.pid, other.path);
    expect(fourth.filesHashed).toBe(1);
  });

  it('is not believed when others could write it, or when it is not a store', async () => {
    const storePath = join(dir, 'loose', 'hashes.json');
    const binary = runningCopy('tool-c');
    const writer = new HashStore(storePath);
    await new BinaryIntegrity(writer).check(binary.pid, binary.path);
    writer.flush();

    chmodSync(storePath, 0o666);
    const loose = new BinaryIntegrity(new HashStore(storePath));
    await loose.check(binary.pid, binary.path);
    expect(loose.filesHashed).toBe(1);

    chmodSync(storePath, 0o600);
    chmodSync(join(dir, 'loose'), 0o777);
    const looseDirectory = new BinaryIntegrity(new HashStore(storePath));
    await looseDirectory.check(binary.pid, binary.path);
    expect(looseDirectory.filesHashed).toBe(1);
    chmodSync(join(dir, 'loose'), 0o700);

    for (const junk of ['{', '[]', '{"format":1,"hashes":{"x":"not-a-hash"}}', '{"format":2,"hashes":{}}']) {
      writeFileSync(storePath, junk, { mode: 0o600 });
      const broken = new BinaryIntegrity(new HashStore(storePath));
      expect((await broken.check(binary.pid, binary.path)).sha256).toBe(await sha256File(binary.path));
      expect(broken.filesHashed).toBe(1);
    }
  });
});
