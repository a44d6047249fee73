// `portcullis test` as a policy author runs it: the built CLI, the real `opa test`, the example
// policy with its extension rules, and author tests written into a temporary directory.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const POLICY = 'policies/examples/extensions.yaml';
const EXT = 'policies/examples/ext';
const EXT_TESTS = 'policies/examples/ext-tests';

/** Writes `files` (name → text) into a fresh directory under the test's temp dir. */
function writeDir(name: string, files: Record<string, string>): string {
  const target = join(dir, name);
  mkdirSync(target, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(target, file), text);
  return target;
}

// Python on port 22: the YAML allows it (no binaries on source-hosting), the extension denies it.
const PYTHON_SSH_ALLOWED_TEST = `package author_test

import data.portcullis.authz.decision

test_python_may_use_ssh if {
	d := decision with input as {"exec": {"path": "/usr/bin/python3", "ancestors": []}, "network": {"host": "git.example.com", "port": 22}}
	d.allow
}
`;

describe('portcullis test', () => {
  it('passes on the example policy, its extension and its author tests', async () => {
    const result = await cli('test', '--policy', POLICY, '--rego', EXT, '-v', EXT_TESTS);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const summary = /PASS: (\d+)\/(\d+)/.exec(result.stdout);
    expect(summary).not.toBeNull();
    expect(summary![1]).toBe(summary![2]);
    expect(Number(summary![1])).toBeGreaterThan(0);
    expect(result.stdout).not.toContain('FAIL');
    // Verbose output lists the author's tests, including ones where the extension denies.
    expect(result.stdout).toMatch(/test_port_22_other_binary_denied: PASS/);
    expect(result.stdout).toMatch(/test_paste_upload_denied: PASS/);
  });

  it("does not run the built-in Rego's own unit tests", async () => {
    const result = await cli('test', '--policy', POLICY, '--rego', EXT, '-v', EXT_TESTS);
    expect(result.code).toBe(0);
    expect(result.stdout).not.toMatch(/data\.portcullis\.authz(_test)?\.test_/);
    for (const line of result.stdout.split('\n').filter((l) => /: (PASS|FAIL)/.test(l))) {
      expect(line).toMatch(/^data\.portcullis\.ext_test\./);
    }
  });

  it("fails with opa's failure output when an author test fails", async () => {
    const tests = writeDir('failing', { 'author_test.rego': PYTHON_SSH_ALLOWED_TEST });
    const result = await cli('test', '--policy', POLICY, '--rego', EXT, tests);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toMatch(/data\.author_test\.test_python_may_use_ssh: FAIL/);
    expect(result.stdout).toMatch(/FAIL: 1\/1/);
  });

  it('consults the extension only when it is given with --rego', async () => {
    // The same author test passes against the YAML alone: the failure above is the extension's.
    const tests = writeDir('yaml-only', { 'author_test.rego': PYTHON_SSH_ALLOWED_TEST });
    const result = await cli('test', '--policy', POLICY, tests);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/PASS: 1\/1/);
  });

  it('runs the tests that live beside the extension in its --rego directory', async () => {
    const ext = writeDir('ext-with-tests', {
      'ext.rego': 'package portcullis.ext\n\ndeny contains "no telnet" if input.network.port == 23\n',
      'ext_test.rego': `package portcullis.ext_test

import data.portcullis.authz.decision

test_telnet_denied if {
	d := decision with input as {"exec": {"path": "/usr/bin/telnet", "ancestors": []}, "network": {"host": "git.example.com", "port": 23}}
	d.reason == "blocked by an extension rule: no telnet"
}
`,
    });
    const result = await cli('test', '--policy', POLICY, '--rego', ext, '-v');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/data\.portcullis\.ext_test\.test_telnet_denied: PASS/);
  });

  it("evaluates against the given policy's data", async () => {
    const tests = writeDir('data', {
      'data_test.rego': `package data_test

test_policies_present if {
	data.portcullis.policies.pastebin.binaries == ["/usr/bin/curl", "/usr/bin/python3*"]
	count(data.portcullis.index.exact["git.example.com"]) == 1
}
`,
    });
    expect((await cli('test', '--policy', POLICY, tests)).code).toBe(0);
    // Against another policy the same test fails.
    expect((await cli('test', '--policy', 'testdata/policies/fixture.yaml', tests)).code).not.toBe(0);
  });

  it('runs only the tests matching --run', async () => {
    const result = await cli('test', '--policy', POLICY, '--rego', EXT, '-v', '--run', 'paste', EXT_TESTS);
    expect(result.code).toBe(0);
    const listed = result.stdout.split('\n').filter((l) => /: PASS/.test(l));
    expect(listed.length).toBeGreaterThan(0);
    for (const line of listed) expect(line).toContain('paste');
  });

  it('exits 2 with file:line:col for an invalid policy', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - host: "*"\n        port: 443\n');
    const result = await cli('test', '--policy', bad, EXT_TESTS);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:5:\\d+: `, 'm'));
    expect(result.stdout).toBe('');
  });

  it('refuses an extension that needs builtins not compiled into WebAssembly', async () => {
    const ext = writeDir('sprintf-ext', {
      'ext.rego': 'package portcullis.ext\n\ndeny contains sprintf("port %d is closed", [input.network.port]) if input.network.port == 23\n',
    });
    const result = await cli('test', '--policy', POLICY, '--rego', ext, EXT_TESTS);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/cannot be loaded by the engine: .*non-native builtins: sprintf/);
    expect(result.stderr).toMatch(/WebAssembly/);
  });

  it('explains that deny must be a set when an extension defines it otherwise', async () => {
    const ext = writeDir('boolean-ext', { 'ext.rego': 'package portcullis.ext\n\ndeny if input.network.port == 23\n' });
    const result = await cli('test', '--policy', POLICY, '--rego', ext, EXT_TESTS);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/rego_type_error/);
    expect(result.stderr).toMatch(/must be a set of reasons: deny contains/);
  });

  it('reports an extension that does not compile', async () => {
    const ext = writeDir('syntax-ext', { 'ext.rego': 'package portcullis.ext\n\ndeny contains x if {\n\tx := 1 +\n}\n' });
    const result = await cli('test', '--policy', POLICY, '--rego', ext, EXT_TESTS);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/ext\.rego:\d+: rego_parse_error/);
  });

  it('exits 2 for a test directory that does not exist, and non-zero when no test runs', async () => {
    const missing = await cli('test', '--policy', POLICY, join(dir, 'no-such-dir'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/test directory ".*no-such-dir" does not exist/);
    const empty = await cli('test', '--policy', POLICY, writeDir('empty', {}));
    expect(empty.code).not.toBe(0);
  });
});
