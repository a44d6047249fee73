// Loading the policy (and the engine) for a sub-command: on failure, the problem goes to
// stderr and the process exits 2 for a bad policy (as `check` does), 1 for anything else.
import type { CredentialStore } from '../credentials/store.js';
import { PolicyEngine } from '../engine/engine.js';
import { loadPolicyFile, PolicyLoadError, type LoadedPolicy } from '../policy/load.js';

function exitWith(err: unknown): never {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(err instanceof PolicyLoadError ? 2 : 1);
}

export async function loadPolicyOrExit(file: string): Promise<LoadedPolicy> {
  try {
    return await loadPolicyFile(file);
  } catch (err) {
    exitWith(err);
  }
}

export async function engineOrExit(file: string, regoDirs: string[] = [], credentials?: CredentialStore): Promise<PolicyEngine> {
  try {
    return await PolicyEngine.create(await loadPolicyFile(file), regoDirs, credentials);
  } catch (err) {
    exitWith(err);
  }
}
