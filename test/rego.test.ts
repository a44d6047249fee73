// The built-in Rego under `opa`: strict checks, formatting, unit tests and their coverage.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

it('passes opa check --strict, opa fmt, and opa test with at least 95 % coverage', async () => {
  const { stdout } = await promisify(execFile)('bash', ['scripts/test-rego.sh'], { encoding: 'utf8' });
  expect(stdout).toMatch(/PASS: \d+\/\d+/);
  const coverage = Number(/coverage of .*authz\.rego: ([\d.]+) %/.exec(stdout)?.[1]);
  expect(coverage).toBeGreaterThanOrEqual(95);
});
