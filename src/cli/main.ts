#!/usr/bin/env node
// The `portcullis` command: loads the program (program.ts and everything it uses, bundled into
// one CommonJS file by scripts/bundle-cli.mjs) and runs it. Start-up time matters for
// `portcullis run`, so the bundle is compiled with V8's code cache (./code-cache.ts) rather than
// through Node's module loader, which has no code cache for ES modules in Node 20.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { openCodeCache } from './code-cache.js';
import { isSubcommand } from './subcommands.js';

const BUNDLE = fileURLToPath(new URL('./program.cjs', import.meta.url));

function runBundle(): void {
  // Wrapped as Node wraps a CommonJS module, on the bundle's first line so line numbers match.
  const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(BUNDLE, 'utf8')}\n})`;
  const requested = process.argv[2];
  const cache = openCodeCache(BUNDLE, isSubcommand(requested) ? requested : 'help');
  const script = new vm.Script(source, {
    filename: BUNDLE,
    ...(cache.data ? { cachedData: cache.data } : {}),
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  if (cache.data === undefined || script.cachedDataRejected === true) {
    // At exit the cache holds what this run compiled, not only the top level.
    process.once('exit', () => cache.save(script.createCachedData()));
  }
  const module = { exports: {} };
  const load = script.runInThisContext() as (...args: unknown[]) => void;
  load(module.exports, createRequire(BUNDLE), module, BUNDLE, dirname(BUNDLE));
}

runBundle();
