// The CLI's side of credentials: `proxy --placeholders FILE` (0600, VARIABLE=placeholder, no
// value), `check` locating a missing variable, `eval` printing no value.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const SECRET = 'cli-secret-value-8d1f0c';
let dir: string;
let policy: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pc-cred-cli-'));
  writeFileSync(join(dir, 'token'), `${SECRET}-file\n`, { mode: 0o600 });
  policy = join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    `version: 1
credentials:
  github:
    from: env:PC_CLI_TOKEN
  vault:
    from: file:token
network_policies:
  gh:
    endpoints:
      - { host: api.example.com, port: 443, protocol: rest, access: full, credentials: [github, vault] }
`,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('proxy --placeholders writes VARIABLE=placeholder lines, mode 0600, and no value anywhere', async () => {
  const file = join(dir, 'placeholders.env');
  const child = spawn(process.execPath, [CLI, 'proxy', '--policy', policy, '--listen', '127.0.0.1:0', '--placeholders', file, '--audit', join(dir, 'audit.jsonl')], {
    env: { ...process.env, PC_CLI_TOKEN: SECRET },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  try {
    const deadline = Date.now() + 30_000;
    while (!output.includes('listening') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    expect(output).toContain('listening');
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^PC_CLI_TOKEN=portcullis-cred-github-[a-z2-7]{26}\nvault=portcullis-cred-vault-[a-z2-7]{26}\n$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // A credential added by a reload: the file is written again, the others keep their placeholders.
    writeFileSync(policy, readFileSync(policy, 'utf8').replace('network_policies:', '  extra:\n    from: file:token\nnetwork_policies:'));
    child.kill('SIGHUP');
    const reloaded = Date.now() + 20_000;
    while (!readFileSync(file, 'utf8').includes('extra=') && Date.now() < reloaded) await new Promise((r) => setTimeout(r, 50));
    const again = readFileSync(file, 'utf8');
    expect(again.startsWith(text.trimEnd().split('\n')[0]!)).toBe(true);
    expect(again).toMatch(/^extra=portcullis-cred-extra-[a-z2-7]{26}$/m);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('close', r));
  }
  expect(output).not.toContain(SECRET);
  expect(readFileSync(join(dir, 'audit.jsonl'), 'utf8')).not.toContain(SECRET);
}, 60_000);

it('check: a missing variable is an error at its from:, exit 2; eval prints no value', () => {
  const check = spawnSync(process.execPath, [CLI, 'check', '--policy', policy], { env: { ...process.env, PC_CLI_TOKEN: '' }, encoding: 'utf8' });
  expect(check.status).toBe(2);
  expect(check.stderr).toContain(`${policy}:4:11: credential "github": environment variable PC_CLI_TOKEN is not set (or empty)`);
  const evaluated = spawnSync(process.execPath, [CLI, 'eval', '--policy', policy, '--host', 'api.example.com', '--port', '443', '--method', 'GET', '--path', '/'], { env: { ...process.env, PC_CLI_TOKEN: SECRET }, encoding: 'utf8' });
  expect(JSON.parse(evaluated.stdout)).toMatchObject({ allow: true, policy: 'gh' });
  expect(evaluated.stdout + evaluated.stderr).not.toContain(SECRET);
}, 60_000);
