// Reads a policy file from disk (the I/O edge of the policy stage).
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { readCredential } from '../credentials/source.js';
import type { LoadedCredential } from '../credentials/store.js';
import { buildPolicyData } from './data-document.js';
import { parsePolicySource, type LocatedCredential } from './source.js';
import type { Policy, PolicyData, SourceError } from './types.js';

export interface LoadedPolicy {
  file: string;
  policies: Policy[];
  data: PolicyData;
  /** The credentials' values, read now; kept apart from `data` (the Rego never sees a value). */
  credentials: LoadedCredential[];
}

export class PolicyLoadError extends Error {
  constructor(readonly errors: SourceError[]) {
    super(errors.map((e) => `${e.file}:${e.line}:${e.col}: ${e.message}`).join('\n'));
    this.name = 'PolicyLoadError';
  }
}

/** Reads every credential's value now (load and reload); a failure is located at its `from:`. */
function readCredentials(located: LocatedCredential[], file: string): LoadedCredential[] {
  const errors: SourceError[] = [];
  const credentials: LoadedCredential[] = [];
  for (const { name, source, line, col } of located) {
    const read = readCredential(source);
    if (read.ok) credentials.push({ name, source, value: read.value });
    else errors.push({ file, line, col, message: `credential "${name}": ${read.message}` });
  }
  if (errors.length > 0) throw new PolicyLoadError(errors);
  return credentials;
}

function fromText(text: string, file: string): LoadedPolicy {
  const result = parsePolicySource(text, file);
  if (!result.ok) throw new PolicyLoadError(result.errors);
  return { file, policies: result.policies, data: buildPolicyData(result.policies), credentials: readCredentials(result.credentials, file) };
}

function unreadable(file: string, err: unknown): PolicyLoadError {
  return new PolicyLoadError([{ file, line: 1, col: 1, message: `cannot read policy file: ${(err as Error).message}` }]);
}

export async function loadPolicyFile(file: string): Promise<LoadedPolicy> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
  return fromText(text, file);
}

export function loadPolicyFileSync(file: string): LoadedPolicy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
  return fromText(text, file);
}

export { fromText as loadPolicyText };
