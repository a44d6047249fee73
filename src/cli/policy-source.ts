// Where a long-running command takes its policy from: a policy file (`--policy`), a built bundle
// (`--bundle`, verified when a key is given), or bundle services per OPA's configuration
// (`--config`). Each gives an engine and a way to reload it; a failed reload keeps the last
// good policy.
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseOpaConfig } from '../bundle/config.js';
import { startManagement } from '../bundle/management.js';
import { readBundle } from '../bundle/read.js';
import { CredentialStore } from '../credentials/store.js';
import { PolicyEngine } from '../engine/engine.js';
import { loadPolicyFile } from '../policy/load.js';
import { addVerificationFlags, verificationOptions, type VerificationFlags } from './bundle-options.js';
import { engineOrExit } from './policy-or-exit.js';
import { collect } from './repeatable.js';

export interface PolicySourceFlags extends VerificationFlags {
  policy?: string;
  bundle?: string;
  config?: string;
  rego?: string[];
}

export interface OpenedPolicy {
  engine: PolicyEngine;
  /** What reload events name (the file, or the bundle service). */
  describe: string;
  /** A file whose changes should reload (none for bundle services: they poll). */
  watchFile?: string;
  reload(): Promise<void>;
  /** Calls `listener` when the policy changed by itself (a bundle service pushed a revision). */
  onChange(listener: () => void): void;
  stop(): Promise<void>;
}

export function addPolicySourceFlags(command: Command): Command {
  command
    .option('--policy <file>', 'policy file (YAML)')
    .option('--bundle <file>', 'policy from a bundle built by `portcullis build` (or opa build)')
    .option('--config <file>', "policy from bundle services, with decision logs and status, per OPA's configuration format")
    .option('--rego <dir>', 'directory of extension Rego (repeatable; with --policy)', collect);
  return addVerificationFlags(command);
}

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

async function bundleEngine(file: string, flags: PolicySourceFlags): Promise<OpenedPolicy> {
  const verification = verificationOptions(flags);
  const load = async (): Promise<{ wasm: Buffer; data: import('../policy/types.js').PolicyData; revision: string }> => readBundle(await readFile(file), verification);
  let first;
  try {
    first = await load();
  } catch (err) {
    fail(`${file}: ${(err as Error).message}`);
  }
  const engine = await PolicyEngine.fromWasm(first.wasm, first.data, `${file} (revision ${first.revision})`);
  return {
    engine,
    describe: file,
    watchFile: file,
    reload: async () => {
      const next = await load();
      await engine.replaceWasm(next.wasm, next.data, `${file} (revision ${next.revision})`);
    },
    onChange: () => undefined,
    stop: async () => undefined,
  };
}

/** `placeholders`: how credentials' placeholders are made (by default at random, per process). */
export async function openPolicySource(flags: PolicySourceFlags, requestedBy: string, log: (line: string) => void, placeholders?: (name: string) => string): Promise<OpenedPolicy> {
  const given = [flags.policy, flags.bundle, flags.config].filter((f) => f !== undefined);
  if (given.length !== 1) fail('give exactly one of --policy FILE, --bundle FILE or --config FILE');
  if (flags.rego && flags.policy === undefined) fail('--rego applies to --policy only (a bundle carries its compiled Rego)');
  if (flags.policy !== undefined) {
    const file = flags.policy;
    const engine = await engineOrExit(file, flags.rego ?? [], placeholders ? new CredentialStore([], placeholders) : undefined);
    return { engine, describe: file, watchFile: file, reload: async () => engine.replace(await loadPolicyFile(file)), onChange: () => undefined, stop: async () => undefined };
  }
  if (flags.bundle !== undefined) return bundleEngine(flags.bundle, flags);
  const file = flags.config!;
  let config;
  try {
    config = parseOpaConfig(await readFile(file, 'utf8'), file);
  } catch (err) {
    fail((err as Error).message);
  }
  for (const warning of config.warnings) log(`${file}: ${warning}`);
  const management = await startManagement({ config, requestedBy, log });
  return {
    engine: management.engine,
    describe: `${file} (bundle ${config.bundles[0]!.name})`,
    reload: () => management.puller.pollNow(),
    onChange: (listener) => management.onActivated(() => listener()),
    stop: () => management.stop(),
  };
}
