// Credentials without a network: the policy keys and their load errors (file:line:col), the
// value store beside the data document, placeholders, the pure swap, the sandbox environment
// and srt-proxy verdicts (with the real engine: wasm compiled by the real opa).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePlaceholder, PLACEHOLDER_PREFIX, seededPlaceholders } from '../src/credentials/placeholder.js';
import { Secret } from '../src/credentials/secret.js';
import { CredentialStore } from '../src/credentials/store.js';
import { placeholdersInHost, swapBody, swapRequest } from '../src/credentials/swap.js';
import { verdictFor } from '../src/decider/verdict.js';
import { PolicyEngine } from '../src/engine/engine.js';
import { loadPolicyFile, loadPolicyText, PolicyLoadError } from '../src/policy/load.js';
import { withCredentialPlaceholders } from '../src/sandbox/environment.js';

const SECRET = 'ghp_unit-secret-0123456789';
const OTHER = 'other-secret-value-42';
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pc-cred-'));
  process.env.PC_UNIT_TOKEN = SECRET;
});
afterAll(() => {
  delete process.env.PC_UNIT_TOKEN;
  rmSync(dir, { recursive: true, force: true });
});

function policy(body: string, credentials = '  github:\n    from: env:PC_UNIT_TOKEN\n'): string {
  return `version: 1\ncredentials:\n${credentials}network_policies:\n${body}`;
}

const REST_443 = `  gh:\n    endpoints:\n      - host: api.example.com\n        port: 443\n        protocol: rest\n        access: full\n        credentials: [github]\n`;

function loadErrors(text: string): string[] {
  try {
    loadPolicyText(text, 'p.yaml');
  } catch (err) {
    if (err instanceof PolicyLoadError) return err.errors.map((e) => `${e.line}:${e.col}: ${e.message}`);
    throw err;
  }
  return [];
}

describe('policy: credentials and their load errors', () => {
  it('loads a bound credential; the data document holds names only, never the value', () => {
    const loaded = loadPolicyText(policy(REST_443), 'p.yaml');
    expect(loaded.data.policies.gh!.endpoints[0]).toMatchObject({ credentials: ['github'], allow_cleartext_credentials: false, credentials_in_body: false });
    expect(loaded.credentials.map((c) => c.name)).toEqual(['github']);
    expect(loaded.credentials[0]!.value.reveal()).toBe(SECRET);
    expect(JSON.stringify(loaded.data)).not.toContain(SECRET);
    // Printing the whole loaded policy (a log line, a crash report) shows no value either.
    expect(JSON.stringify(loaded)).not.toContain(SECRET);
    expect(inspect(loaded, { depth: 10 })).not.toContain(SECRET);
    expect(String(loaded.credentials[0]!.value)).not.toContain(SECRET);
  });

  it('an unknown credential, a missing variable, an unreadable file: errors at file:line:col', () => {
    expect(loadErrors(policy(REST_443.replace('[github]', '[gitlab]')))).toEqual(['12:23: credential "gitlab" is not declared under the top-level "credentials:"']);
    expect(loadErrors(policy(REST_443, '  github:\n    from: env:PC_UNIT_NOT_SET\n'))).toEqual(['4:11: credential "github": environment variable PC_UNIT_NOT_SET is not set (or empty)']);
    expect(loadErrors(policy(REST_443, `  github:\n    from: file:${dir}/absent\n`))).toEqual([`4:11: credential "github": cannot read ${dir}/absent: ENOENT`]);
    expect(loadErrors(policy(REST_443, '  github:\n    from: vault:x\n'))[0]).toMatch(/^4:11: "vault:x" must be "env:VARIABLE" or "file:\/path"/);
    expect(loadErrors(policy(REST_443, '  Git-Hub:\n    from: env:PC_UNIT_TOKEN\n'))[0]).toMatch(/^3:3: credential name "Git-Hub" must be/);
  });

  it('passthrough, plain HTTP without allow_cleartext_credentials, and stray keys are load errors', () => {
    const passthrough = REST_443.replace('protocol: rest\n        access: full\n', 'tls: passthrough\n');
    expect(loadErrors(policy(passthrough))[0]).toMatch(/^11:9: credentials are swapped only in requests the proxy sees, which "tls: passthrough"/);
    const l4 = REST_443.replace('protocol: rest\n        access: full\n        ', '');
    expect(loadErrors(policy(l4))[0]).toMatch(/^10:9: credentials need an inspected endpoint/);
    const port80 = REST_443.replace('port: 443', 'port: 80');
    expect(loadErrors(policy(port80))[0]).toMatch(/^12:9: port 80 is plain HTTP: .*add "allow_cleartext_credentials: true"/);
    expect(loadErrors(policy(port80.replace('credentials: [github]', 'credentials: [github]\n        allow_cleartext_credentials: true')))).toEqual([]);
    const stray = REST_443.replace('credentials: [github]', 'credentials_in_body: true');
    expect(loadErrors(policy(stray))[0]).toMatch(/"credentials_in_body" applies only to an endpoint with "credentials"/);
  });

  it('a file source is read again on every load: a rotated file gives the new value', async () => {
    const secretFile = join(dir, 'token');
    writeFileSync(secretFile, 'first-value\n');
    const file = join(dir, 'rotate.yaml');
    writeFileSync(file, policy(REST_443, `  github:\n    from: file:${secretFile}\n`));
    const store = new CredentialStore((await loadPolicyFile(file)).credentials);
    const placeholder = store.placeholderVariables()[0]!.placeholder;
    const swap = (): string => (swapRequest({ headers: [{ name: 'Authorization', value: `Bearer ${placeholder}` }], target: '/' }, ['github'], store.table) as { headers: Array<{ value: string }> }).headers[0]!.value;
    expect(swap()).toBe('Bearer first-value');
    writeFileSync(secretFile, 'second-value\n');
    store.update((await loadPolicyFile(file)).credentials);
    expect(store.placeholderVariables()[0]!.placeholder).toBe(placeholder);
    expect(swap()).toBe('Bearer second-value');
  });
});

describe('placeholders', () => {
  it('carry 128 random bits after a recognisable prefix; valid header value, URL component and DNS label', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const p = makePlaceholder('abcdefghijklmnopqrst');
      expect(p).toMatch(/^portcullis-cred-abcdefghijklmnopqrst-[a-z2-7]{26}$/);
      expect(encodeURIComponent(p)).toBe(p);
      expect(p.length).toBeLessThanOrEqual(63);
      seen.add(p);
    }
    expect(seen.size).toBe(200);
  });

  it('seeded (proxy workers of one start): the same seed gives the same placeholder, another seed or name another one', () => {
    const seed = Buffer.alloc(32, 7);
    const [a, b] = [seededPlaceholders(seed), seededPlaceholders(Buffer.from(seed))];
    expect(a('github')).toMatch(/^portcullis-cred-github-[a-z2-7]{26}$/);
    expect(a('github')).toBe(b('github'));
    expect(a('abcdefghijklmnopqrst').length).toBeLessThanOrEqual(63);
    expect(a('gitlab')).not.toBe(a('github'));
    expect(seededPlaceholders(Buffer.alloc(32, 8))('github')).not.toBe(a('github'));
  });

  it('a value never prints: JSON, string, inspect', () => {
    const s = new Secret(SECRET);
    expect(JSON.stringify({ s })).not.toContain(SECRET);
    expect(`${s}`).not.toContain(SECRET);
    expect(inspect({ s })).not.toContain(SECRET);
    expect(s.reveal()).toBe(SECRET);
  });
});

describe('the swap', () => {
  const store = new CredentialStore([
    { name: 'github', source: { kind: 'env', variable: 'GITHUB_TOKEN' }, value: new Secret(SECRET) },
    { name: 'other', source: { kind: 'file', path: '/x' }, value: new Secret(OTHER) },
  ]);
  const [gh, other] = store.placeholderVariables().map((v) => v.placeholder) as [string, string];

  it('swaps every occurrence of a bound placeholder in header values and the query', () => {
    const out = swapRequest({ headers: [{ name: 'Authorization', value: `Bearer ${gh}` }, { name: 'X-Both', value: `${gh},${gh}` }, { name: 'Accept', value: '*/*' }], target: `/v1/x?token=${gh}&a=1` }, ['github'], store.table);
    expect(out).toEqual({
      ok: true,
      headers: [{ name: 'Authorization', value: `Bearer ${SECRET}` }, { name: 'X-Both', value: `${SECRET},${SECRET}` }, { name: 'Accept', value: '*/*' }],
      target: `/v1/x?token=${SECRET}&a=1`,
      swapped: ['github'],
    });
  });

  it('refuses a placeholder the decision does not bind, or one in the path or a header name', () => {
    expect(swapRequest({ headers: [{ name: 'Authorization', value: `Bearer ${other}` }], target: '/' }, ['github'], store.table)).toEqual({ ok: false, misused: ['other'], where: 'header Authorization' });
    expect(swapRequest({ headers: [], target: `/a?x=${gh}` }, [], store.table)).toEqual({ ok: false, misused: ['github'], where: 'the URL query' });
    expect(swapRequest({ headers: [], target: `/${gh}/x` }, ['github'], store.table)).toEqual({ ok: false, misused: ['github'], where: 'the URL path' });
    expect(swapRequest({ headers: [{ name: `x-${gh}`, value: '1' }], target: '/' }, ['github'], store.table)).toMatchObject({ ok: false, where: 'a header name' });
  });

  it('leaves text that only looks like a placeholder (another start, a guess) as it is', () => {
    const stale = makePlaceholder('github');
    const out = swapRequest({ headers: [{ name: 'Authorization', value: `Bearer ${stale} ${PLACEHOLDER_PREFIX}` }], target: '/' }, [], store.table);
    expect(out).toMatchObject({ ok: true, swapped: [] });
  });

  it('bodies: bound placeholders swapped (lengths change), others refused, nothing to do leaves the buffer', () => {
    const body = Buffer.from(`{"token":"${gh}","n":"é"}`, 'utf8');
    const swapped = swapBody(body, ['github'], store.table);
    expect(swapped.ok && swapped.body.toString('utf8')).toBe(`{"token":"${SECRET}","n":"é"}`);
    expect(swapBody(Buffer.from(`x=${other}`), ['github'], store.table)).toEqual({ ok: false, misused: ['other'] });
    const plain = Buffer.from('nothing here');
    expect(swapBody(plain, ['github'], store.table)).toEqual({ ok: true, body: plain, swapped: [] });
  });

  it('host names: a placeholder is found whatever the case, and split across labels', () => {
    expect(placeholdersInHost(`${gh.toUpperCase()}.example`, store.table)).toEqual(['github']);
    const split = `${gh.slice(0, 20)}.${gh.slice(20)}.example`;
    expect(placeholdersInHost(split, store.table)).toEqual(['github']);
    expect(placeholdersInHost('api.example.com', store.table)).toEqual([]);
  });

  it('the sandbox environment: the placeholder in the variable, no variable holding a value', () => {
    const env = withCredentialPlaceholders({ GITHUB_TOKEN: SECRET, GH_COPY: `x${SECRET}x`, PATH: '/usr/bin' }, store.placeholderVariables(), (t) => store.holdsValue(t));
    expect(env).toEqual({ GITHUB_TOKEN: gh, other, PATH: '/usr/bin' });
    expect(store.placeholderFile()).toBe(`GITHUB_TOKEN=${gh}\nother=${other}\n`);
  });
});

describe('srt-proxy verdicts', () => {
  let engine: PolicyEngine;
  beforeAll(async () => {
    engine = await PolicyEngine.create(
      loadPolicyText(
        policy(`${REST_443}  open:\n    endpoints:\n      - { host: open.example.com, port: 443, protocol: rest, access: full }\n`),
        'p.yaml',
      ),
    );
  }, 60_000);

  it('a bound placeholder becomes cred and credential; elsewhere it is denied 403 and audited by name', () => {
    const placeholder = engine.credentials.placeholderVariables()[0]!.placeholder;
    const req = { id: 1, method: 'GET', host: 'api.example.com', port: 443, path: '/', sni: 'api.example.com', headers: { authorization: [`Bearer ${placeholder}`] } };
    const allowed = verdictFor(engine, req, false);
    expect(allowed.verdict).toEqual({ t: 'verdict', id: 1, action: 'allow', cred: 'github', credential: SECRET });
    expect(JSON.stringify(allowed.event)).not.toContain(SECRET);
    // No server name: plain HTTP, where this endpoint does not allow the credential in clear text.
    const { sni: _sni, ...plain } = req;
    expect(verdictFor(engine, { ...plain, id: 4 }, false).verdict).toMatchObject({ action: 'deny', status: 403 });
    const misused = verdictFor(engine, { ...req, id: 2, host: 'open.example.com' }, false);
    expect(misused.verdict).toMatchObject({ action: 'deny', status: 403 });
    expect(misused.event).toMatchObject({ kind: 'credential_misuse', credentials: ['github'], error: 'credential_not_bound' });
    expect(JSON.stringify(misused)).not.toContain(SECRET);
    expect(verdictFor(engine, { ...req, id: 3, headers: {} }, false).verdict).toEqual({ t: 'verdict', id: 3, action: 'allow' });
  });
});
