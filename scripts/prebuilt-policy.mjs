// The built-in Rego's compiled policy, shipped in the package (npm pack: `prepack` builds, checks
// and places it; `postpack` removes it again, so the working tree goes on compiling through its
// cache like any other): dist/wasm/<key>.wasm, keyed by the Rego's content hash exactly as the
// cache is (src/engine/bundle.ts), so an installed package needs neither opa nor Go for it.
//   node scripts/prebuilt-policy.mjs build   (after `npm run build`)
//   node scripts/prebuilt-policy.mjs clean
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { buildWasm, PREBUILT_WASM_DIR, regoFiles, regoSourcesKey } = await import(`${ROOT}dist/engine/bundle.js`);

/** The packed CLI must decide from the shipped file alone: no opa, an empty cache. */
function checkShipped() {
  const home = mkdtempSync(join(tmpdir(), 'portcullis-prebuilt-check-'));
  try {
    const env = { ...process.env, PORTCULLIS_OPA: join(home, 'no-opa-here'), XDG_CACHE_HOME: home };
    const evaluate = (binary) =>
      JSON.parse(execFileSync(process.execPath, [
        `${ROOT}dist/cli/main.js`, 'eval', '--policy', `${ROOT}policies/examples/agent.yaml`,
        '--host', 'api.llm.example', '--port', '443', '--address', '203.0.113.7', '--binary', binary,
      ], { env, encoding: 'utf8' }));
    const allowed = evaluate('/usr/bin/curl');
    const denied = evaluate('/usr/bin/wget');
    if (allowed.allow !== true || denied.allow !== false) {
      throw new Error(`the prebuilt policy decides wrongly: ${JSON.stringify({ allowed, denied })}`);
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

const mode = process.argv[2];
if (mode === 'clean') {
  rmSync(PREBUILT_WASM_DIR, { recursive: true, force: true });
} else if (mode === 'build') {
  const files = await regoFiles([]);
  const key = await regoSourcesKey(files);
  // Built afresh by opa, never copied from a cache, so nothing planted there is shipped.
  const wasm = await buildWasm(files);
  rmSync(PREBUILT_WASM_DIR, { recursive: true, force: true });
  mkdirSync(PREBUILT_WASM_DIR, { recursive: true });
  const file = join(PREBUILT_WASM_DIR, `${key}.wasm`);
  writeFileSync(file, wasm);
  chmodSync(file, 0o644);
  checkShipped();
  process.stderr.write(`prebuilt policy: ${file} (${wasm.length} bytes, from ${files.length} Rego file(s))\n`);
} else {
  process.stderr.write('usage: node scripts/prebuilt-policy.mjs build|clean\n');
  process.exit(2);
}
