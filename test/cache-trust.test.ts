// What portcullis reads back from its cache directory (compiled policy, V8 code, executables'
// hashes) is used only from files that no one else could have written.
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleKey, openCodeCache } from '../src/cli/code-cache.js';
import { compiledWasm } from '../src/engine/bundle.js';
import { readTrustedCacheFile, writableOnlyByUs } from '../src/util/cache-dir.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-cache-trust-'));
const savedCacheHome = process.env.XDG_CACHE_HOME;
beforeAll(() => {
  process.env.XDG_CACHE_HOME = join(dir, 'cache');
});
afterAll(() => {
  if (savedCacheHome === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedCacheHome;
  rmSync(dir, { recursive: true, force: true });
});

describe('writableOnlyByUs', () => {
  it('accepts files of ours or root that only their owner can write', () => {
    expect(writableOnlyByUs({ uid: 1000, mode: 0o100644 }, 1000)).toBe(true);
    expect(writableOnlyByUs({ uid: 0, mode: 0o100600 }, 1000)).toBe(true);
    expect(writableOnlyByUs({ uid: 1001, mode: 0o100644 }, 1000)).toBe(false);
    expect(writableOnlyByUs({ uid: 1000, mode: 0o100664 }, 1000)).toBe(false);
    expect(writableOnlyByUs({ uid: 1000, mode: 0o100646 }, 1000)).toBe(false);
    expect(writableOnlyByUs({ uid: 1000, mode: 0o040777 }, 1000)).toBe(false);
  });
});

describe('readTrustedCacheFile', () => {
  it('reads a private file, and nothing from a file or directory others can write', () => {
    const folder = join(dir, 'plain');
    mkdirSync(folder, { mode: 0o755 });
    const file = join(folder, 'entry');
    writeFileSync(file, 'kept', { mode: 0o600 });
    expect(readTrustedCacheFile(file)?.toString()).toBe('kept');
    chmodSync(file, 0o666);
    expect(readTrustedCacheFile(file)).toBeNull();
    chmodSync(file, 0o600);
    chmodSync(folder, 0o777);
    expect(readTrustedCacheFile(file)).toBeNull();
    chmodSync(folder, 0o755);
    expect(readTrustedCacheFile(join(folder, 'missing'))).toBeNull();
  });
});

describe('the caches', () => {
  it('build the policy anew when the kept wasm could have been planted', async () => {
    const first = await compiledWasm();
    const wasmDir = join(process.env.XDG_CACHE_HOME!, 'portcullis', 'wasm');
    const [entry] = readdirSync(wasmDir).filter((name) => name.endsWith('.wasm'));
    const kept = join(wasmDir, entry!);
    writeFileSync(kept, 'planted');
    chmodSync(kept, 0o666);
    const again = await compiledWasm();
    expect(again.equals(first)).toBe(true);
  }, 60_000);

  it('run no V8 code from a cache file others could write', () => {
    const bundle = join(dir, 'program.cjs');
    writeFileSync(bundle, 'module.exports = 1;\n');
    openCodeCache(bundle, 'trust').save(Buffer.from('code'));
    expect(openCodeCache(bundle, 'trust').data?.toString()).toBe('code');
    const file = join(process.env.XDG_CACHE_HOME!, 'portcullis', 'v8', 'trust.v8');
    writeFileSync(file, Buffer.concat([Buffer.from(bundleKey(bundle), 'latin1'), Buffer.from('planted')]));
    chmodSync(file, 0o666);
    expect(openCodeCache(bundle, 'trust').data).toBeUndefined();
  });
});
