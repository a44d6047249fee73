// portcullis on OPA's management plane, against real parts: nginx serving signed bundles with
// ETags, a collector for /logs and /status, and OPA itself on the same configuration — both
// activate the same revisions, answer alike and upload decision logs of the same shape. Faults:
// the bundle server down at start, a download cut midway, a gzip bomb, a tampered bundle, the
// collector down for a while, and a restart with the service down (persisted bundle).
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseOpaConfig } from '../src/bundle/config.js';
import { startManagement, type Management } from '../src/bundle/management.js';
import { buildDecisionInput } from '../src/engine/input.js';
import { collector, freePort, nginx, type Collector, type Nginx } from './fixtures/bundle/servers.js';
import { startOpaServer } from './support/opa-server.js';
import { listenOnLoopback } from './support/ports.js';

const ROOT = process.cwd();
const CLI = join(ROOT, 'dist/cli/main.js');
const GIT = buildDecisionInput({ host: 'api.github.com', port: 443, binary: '/usr/bin/git' });
const GITLAB = buildDecisionInput({ host: 'gitlab.example.com', port: 443, binary: '/usr/bin/git' });

let work: string;
let web: Nginx;
let logs: Collector;
let opaWasm: string;
let publicPem: string;

function policyYaml(host: string): string {
  return `version: 1\nnetwork_policies:\n  code:\n    endpoints:\n      - { host: ${host}, port: 443 }\n    binaries:\n      - path: /usr/bin/git\n`;
}

/** Builds revision `rev` allowing `host` and publishes it on nginx (atomically, by rename). */
function publish(rev: string, host: string, name = 'portcullis.tar.gz'): void {
  const policy = join(work, `policy-${rev}.yaml`);
  writeFileSync(policy, policyYaml(host));
  const out = join(work, `bundle-${rev}.tar.gz`);
  execFileSync(process.execPath, [CLI, 'build', '--policy', policy, '--revision', rev, '--signing-key', join(work, 'fleet.key'), '--signing-key-id', 'fleet', '--out', out], { stdio: 'pipe' });
  copyFileSync(out, join(web.root, 'bundles', `${name}.tmp`));
  execFileSync('mv', [join(web.root, 'bundles', `${name}.tmp`), join(web.root, 'bundles', name)]);
}

function configYaml(bundleUrl: string, extra = ''): string {
  return `services:
  bundles:
    url: ${bundleUrl}
  collector:
    url: http://127.0.0.1:${logs.port}
bundles:
  portcullis:
    service: bundles
    resource: bundles/portcullis.tar.gz
    persist: true
    polling:
      min_delay_seconds: 1
      max_delay_seconds: 1
    signing:
      keyid: fleet
keys:
  fleet:
    algorithm: RS256
    key: |
${publicPem.trim().split('\n').map((l) => `      ${l}`).join('\n')}
decision_logs:
  service: collector
  reporting:
    min_delay_seconds: 1
    max_delay_seconds: 1
    upload_size_limit_bytes: 4096
status:
  service: collector
labels:
  fleet: test
${extra}`;
}

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function manage(configText: string, persistence: string): Promise<Management> {
  const config = parseOpaConfig(configText.replace('labels:', `persistence_directory: ${persistence}\nlabels:`), 'config.yaml');
  return startManagement({ config, requestedBy: 'test', log: () => undefined });
}

beforeAll(async () => {
  opaWasm = execFileSync('bash', [join(ROOT, 'scripts/build-opa-wasm.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  work = mkdtempSync(join(tmpdir(), 'pc-fleet-'));
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(work, 'fleet.key'), pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  web = nginx(work, await freePort());
  logs = collector(await freePort());
  await web.start();
  await logs.start();
}, 300_000);

afterAll(async () => {
  await web?.stop();
  await logs?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('one configuration for OPA and portcullis', () => {
  it('both activate the same revisions from nginx, answer alike, and upload decision logs of the same shape', async () => {
    publish('r1', 'api.github.com');
    const configFile = join(work, 'shared.yaml');
    writeFileSync(configFile, configYaml(`http://127.0.0.1:${web.port}`));
    const opa = await startOpaServer(opaWasm, ['--config-file', configFile], { cwd: work });
    const ours = await manage(readFileSync(configFile, 'utf8'), join(work, 'persist-shared'));
    const askOpa = async (input: unknown): Promise<Record<string, unknown> | undefined> => {
      try {
        const res = await fetch(`${opa.url}/v1/data/portcullis/authz/decision`, { method: 'POST', body: JSON.stringify({ input }) });
        return ((await res.json()) as { result?: Record<string, unknown> }).result;
      } catch {
        return undefined;
      }
    };
    try {
      await until('portcullis activates r1', () => ours.puller.status.active_revision === 'r1');
      let opaAnswer: Record<string, unknown> | undefined;
      for (let i = 0; i < 200 && !(opaAnswer = await askOpa(GIT))?.allow; i++) await new Promise((r) => setTimeout(r, 100));
      expect(opaAnswer).toEqual(ours.engine.decide(GIT));
      expect(await askOpa(GITLAB)).toEqual(ours.engine.decide(GITLAB));

      publish('r2', 'gitlab.example.com');
      await until('portcullis activates r2', () => ours.puller.status.active_revision === 'r2');
      for (let i = 0; i < 200 && !(await askOpa(GITLAB))?.allow; i++) await new Promise((r) => setTimeout(r, 100));
      expect(await askOpa(GITLAB)).toEqual(ours.engine.decide(GITLAB));
      expect(ours.engine.decide(GITLAB)).toMatchObject({ allow: true });
      expect(ours.engine.decide(GIT)).toMatchObject({ allow: false });

      await ours.logger!.flush();
      const fromUs = await until('our decision logs arrive', () => logs.events.find((e) => (e.labels as Record<string, string>).version === '0.1.0'));
      const fromOpa = await until('opa decision logs arrive', () => logs.events.find((e) => (e.labels as Record<string, string>).version !== '0.1.0'), 20_000);
      const shape = (e: Record<string, unknown>): Record<string, string> => Object.fromEntries(Object.entries(e).map(([k, v]) => [k, Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v]));
      const common = Object.keys(shape(fromOpa)).filter((k) => k !== 'req_id' && k !== 'nd_builtin_cache');
      expect(Object.keys(shape(fromUs)).sort()).toEqual(expect.arrayContaining(common.sort()));
      for (const key of common) expect(shape(fromUs)[key], key).toBe(shape(fromOpa)[key]);
      expect(fromUs.labels).toMatchObject({ fleet: 'test' });
      expect(fromUs.path).toBe(fromOpa.path);
      const ourStatus = await until('our status arrives', () => logs.statuses.find((s) => (s.labels as Record<string, string>).version === '0.1.0' && (s.bundles as Record<string, { active_revision?: string }>).portcullis?.active_revision === 'r2'));
      expect(ourStatus.bundles).toMatchObject({ portcullis: { name: 'portcullis', active_revision: 'r2' } });
      expect(logs.uploads.every((size) => size <= 4096)).toBe(true);
    } finally {
      await opa.stop();
      await ours.stop();
    }
  }, 120_000);
});

describe('faults', () => {
  it('denies everything with a reason while no bundle was ever activated, then recovers when the server comes up', async () => {
    publish('recovered', 'api.github.com');
    const port = await freePort();
    const ours = await manage(configYaml(`http://127.0.0.1:${port}`), join(work, 'persist-down'));
    try {
      await until('a failed attempt', () => ours.puller.status.code);
      expect(ours.engine.decide(GIT)).toMatchObject({ allow: false, reason: expect.stringContaining('no policy bundle has been activated yet') });
      const late = http.createServer((_req, res) => res.writeHead(200).end(readFileSync(join(web.root, 'bundles/portcullis.tar.gz'))));
      await new Promise<void>((resolve) => late.listen(port, '127.0.0.1', resolve));
      try {
        await until('activation after recovery', () => ours.engine.ready && ours.puller.status.code === undefined, 20_000);
        expect(ours.engine.decide(GIT)).toMatchObject({ allow: true });
      } finally {
        late.close();
      }
    } finally {
      await ours.stop();
    }
  }, 60_000);

  it('keeps the last good bundle through a cut download, a gzip bomb and a tampered bundle, saying why each time', async () => {
    publish('good', 'api.github.com');
    const good = readFileSync(join(web.root, 'bundles/portcullis.tar.gz'));
    let serve: 'good' | 'cut' | 'bomb' | 'tampered' = 'good';
    const server = http.createServer((_req, res) => {
      if (serve === 'good') return void res.writeHead(200, { etag: '"good"' }).end(good);
      if (serve === 'cut') {
        res.writeHead(200, { 'content-length': String(good.length) });
        res.write(good.subarray(0, good.length >> 1));
        setTimeout(() => res.destroy(), 20);
        return;
      }
      if (serve === 'bomb') return void res.writeHead(200).end(gzipSync(Buffer.alloc(300 * 1024 * 1024)));
      const tampered = Buffer.from(good);
      tampered[tampered.length - 40] ^= 0xff;
      res.writeHead(200).end(tampered);
    });
    const port = await listenOnLoopback(server);
    const ours = await manage(configYaml(`http://127.0.0.1:${port}`).replace('persist: true', 'persist: true\n    size_limit_bytes: 67108864'), join(work, 'persist-faults'));
    try {
      await until('good active', () => ours.puller.status.active_revision === 'good');
      for (const [fault, message] of [
        ['cut', /cut short|socket hang up|aborted|ECONNRESET/i],
        ['bomb', /gzip bomb|exceeds/],
        ['tampered', /not gzip|hash does not match|not a valid tar|incorrect header|invalid/i],
      ] as const) {
        serve = fault;
        // The first call may join a poll already under way (served before the fault was set).
        await ours.puller.pollNow();
        await ours.puller.pollNow();
        expect(ours.puller.status.message, fault).toMatch(message);
        expect(ours.puller.status.active_revision, fault).toBe('good');
        expect(ours.engine.decide(GIT), fault).toMatchObject({ allow: true });
      }
    } finally {
      await ours.stop();
      server.close();
    }
  }, 60_000);

  it('after a restart with the service down, enforces the persisted bundle', async () => {
    publish('kept', 'api.github.com');
    const persistence = join(work, 'persist-restart');
    const first = await manage(configYaml(`http://127.0.0.1:${web.port}`), persistence);
    await until('kept active', () => first.puller.status.active_revision === 'kept');
    await first.stop();
    const down = await freePort();
    const second = await manage(configYaml(`http://127.0.0.1:${down}`), persistence);
    try {
      expect(second.puller.status.active_revision).toBe('kept');
      expect(second.engine.decide(GIT)).toMatchObject({ allow: true });
    } finally {
      await second.stop();
    }
  }, 60_000);

  it('buffers decision logs while the collector is down and delivers every one when it returns; drops beyond the buffer are counted', async () => {
    publish('logs', 'api.github.com');
    await logs.stop();
    const before = logs.events.length;
    const ours = await manage(configYaml(`http://127.0.0.1:${web.port}`), join(work, 'persist-logs'));
    try {
      await until('active', () => ours.engine.ready);
      for (let i = 0; i < 50; i++) ours.engine.decide(buildDecisionInput({ host: `h${i}.example`, port: 443 }));
      await ours.logger!.flush();
      expect(ours.logger!.status()).toMatchObject({ code: 'decision_log_upload_failed', buffered: 50, dropped: 0 });
      await logs.start();
      await ours.logger!.flush();
      const mine = logs.events.slice(before).filter((e) => String((e.input as { network: { host: string } }).network.host).endsWith('.example'));
      expect(mine.map((e) => (e.input as { network: { host: string } }).network.host)).toEqual(Array.from({ length: 50 }, (_, i) => `h${i}.example`));
      expect(ours.logger!.status()).toMatchObject({ buffered: 0, dropped: 0 });
    } finally {
      await ours.stop();
    }
    const small = await manage(configYaml(`http://127.0.0.1:${web.port}`).replace('upload_size_limit_bytes: 4096', 'upload_size_limit_bytes: 4096\n    buffer_size_limit_bytes: 5000'), join(work, 'persist-logs2'));
    try {
      await until('active', () => small.engine.ready);
      await logs.stop();
      for (let i = 0; i < 50; i++) small.engine.decide(buildDecisionInput({ host: `d${i}.example`, port: 443 }));
      const status = small.logger!.status();
      expect(status.dropped).toBeGreaterThan(0);
      expect(status.buffered + status.dropped).toBe(50);
    } finally {
      await logs.start();
      await small.stop();
    }
  }, 90_000);
});

describe('polling', () => {
  it('asks nginx with If-None-Match and takes 304 as unchanged', async () => {
    publish('etag', 'api.github.com');
    const ours = await manage(configYaml(`http://127.0.0.1:${web.port}`), join(work, 'persist-etag'));
    try {
      await until('active', () => ours.puller.status.active_revision === 'etag');
      await ours.puller.pollNow();
      await ours.puller.pollNow();
      expect(ours.puller.status.http_code).toBe(304);
      expect(ours.puller.status.active_revision).toBe('etag');
      const log = readFileSync(join(work, 'nginx-access.log'), 'utf8');
      expect(log).toMatch(/"GET \/bundles\/portcullis\.tar\.gz HTTP\/1\.1" 304/);
    } finally {
      await ours.stop();
    }
  }, 60_000);

  it('long-polls a server that speaks it: a new revision is active at once although polling waits a minute', async () => {
    let revision = 0;
    let body = readFileSync(join(web.root, 'bundles/portcullis.tar.gz'));
    const waiting = new Set<() => void>();
    const server = http.createServer((req, res) => {
      const answer = (): void => void res.writeHead(200, { etag: `"${revision}"`, 'content-type': 'application/vnd.openpolicyagent.bundles' }).end(body);
      const wait = /wait=(\d+)/.exec(String(req.headers.prefer ?? ''));
      if (req.headers['if-none-match'] !== `"${revision}"`) return answer();
      if (!wait) return void res.writeHead(304).end();
      const timer = setTimeout(() => {
        waiting.delete(wake);
        res.writeHead(304, { 'content-type': 'application/vnd.openpolicyagent.bundles' }).end();
      }, Number(wait[1]) * 1000);
      const wake = (): void => {
        clearTimeout(timer);
        answer();
      };
      waiting.add(wake);
    });
    const port = await listenOnLoopback(server);
    const config = configYaml(`http://127.0.0.1:${port}`).replace('min_delay_seconds: 1\n      max_delay_seconds: 1', 'min_delay_seconds: 60\n      max_delay_seconds: 120\n      long_polling_timeout_seconds: 30');
    const ours = await manage(config, join(work, 'persist-long'));
    try {
      await until('first active', () => ours.engine.ready);
      await until('a long poll is waiting', () => waiting.size > 0);
      publish('lp', 'gitlab.example.com');
      body = readFileSync(join(web.root, 'bundles/portcullis.tar.gz'));
      revision++;
      const published = Date.now();
      for (const wake of [...waiting]) wake();
      waiting.clear();
      await until('new revision active', () => ours.puller.status.active_revision === 'lp', 5_000);
      expect(Date.now() - published).toBeLessThan(5_000);
    } finally {
      await ours.stop();
      server.closeAllConnections();
      server.close();
    }
  }, 60_000);
});

describe('configuration', () => {
  it('names OPA settings it does not apply, refuses keys OPA does not have, and checks references', () => {
    const base = 'services:\n  s:\n    url: http://127.0.0.1:1\nbundles:\n  b:\n    resource: x.tar.gz\n';
    const parsed = parseOpaConfig(`${base}discovery:\n  name: d\nbundles_extra: 1\n`.replace('bundles_extra: 1\n', ''), 'c.yaml');
    expect(parsed.warnings).toEqual(['discovery: an OPA setting portcullis does not apply (ignored)']);
    expect(parsed.bundles[0]).toMatchObject({ name: 'b', service: 's', resource: 'x.tar.gz', minDelaySeconds: 60, maxDelaySeconds: 120 });
    expect(() => parseOpaConfig(`${base}bundels: {}\n`, 'c.yaml')).toThrow(/c.yaml: bundels: unknown key/);
    expect(() => parseOpaConfig(`${base.replace('resource: x.tar.gz', 'resource: x.tar.gz\n    servce: s')}`, 'c.yaml')).toThrow(/bundles.b.servce: unknown key/);
    expect(() => parseOpaConfig(`${base.replace('resource: x.tar.gz', 'resource: x.tar.gz\n    service: t')}`, 'c.yaml')).toThrow(/no service named "t"/);
    expect(() => parseOpaConfig(`${base}keys:\n  k:\n    algorithm: XX1\n    key: y\n`, 'c.yaml')).toThrow(/keys.k.algorithm/);
    expect(parseOpaConfig(base.replace('resource: x.tar.gz', 'resource: x.tar.gz\n    trigger: manual'), 'c.yaml').warnings).toEqual(['bundles.b.trigger: an OPA setting portcullis does not apply (ignored)']);
    expect(parseOpaConfig('services:\n  - name: s\n    url: http://127.0.0.1:1\nbundles:\n  b: {}\n', 'c.yaml').services.s).toMatchObject({ url: 'http://127.0.0.1:1' });
  });
});

describe('decision log pieces', () => {
  it('erases input fields by JSON pointer and lists what it erased', async () => {
    const { erase } = await import('../src/bundle/decision-log.js');
    const event = { input: { exec: { path: '/usr/bin/git', ancestors: ['/bin/sh'] }, network: { host: 'a~b/c', port: 1 } } };
    expect(erase(event, ['/input/exec/ancestors', '/input/missing', '/input/network/host'])).toEqual(['/input/exec/ancestors', '/input/network/host']);
    expect(event).toEqual({ input: { exec: { path: '/usr/bin/git' }, network: { port: 1 } } });
  });

  it('splits uploads into gzip chunks within the limit, keeping order, and sets apart an event too large alone', async () => {
    const { chunkEvents } = await import('../src/bundle/decision-log.js');
    const { gunzipSync } = await import('node:zlib');
    const { randomBytes } = await import('node:crypto');
    const events = Array.from({ length: 300 }, (_, i) => JSON.stringify({ i, noise: randomBytes(40 + (i % 50)).toString('base64') }));
    events.splice(150, 0, JSON.stringify({ big: randomBytes(6000).toString('base64') }));
    const { chunks, tooLarge } = chunkEvents(events, 2048);
    expect(tooLarge).toBe(1);
    expect(chunks.every((c) => c.body.length <= 2048)).toBe(true);
    const back = chunks.flatMap((c) => JSON.parse(gunzipSync(c.body).toString()) as Array<{ i?: number }>);
    expect(back.map((e) => e.i)).toEqual(Array.from({ length: 300 }, (_, i) => i));
  });
});
