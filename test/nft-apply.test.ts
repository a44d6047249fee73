// The nft I/O edge: availability checks (nft missing, CAP_NET_ADMIN missing), refusal of a bad
// script with nft's own message, counters of a freshly applied ruleset. All in a namespace the
// test creates; the capability check runs the real nft with CAP_NET_ADMIN dropped (setpriv).
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRuleset, checkRuleset, deleteRuleset, NftError, nftAvailable, readCounters } from '../src/nft/apply.js';
import { counterComment, DNS_COUNTER, PROXY_COUNTER, REJECT_COUNTER, SNI_COUNTER } from '../src/nft/names.js';
import { renderRuleset } from '../src/nft/render.js';
import { loadPolicyText } from '../src/policy/load.js';

const ns = `pcnft-${process.pid}-apply`;
let dir: string;

beforeAll(() => {
  execFileSync('ip', ['netns', 'add', ns]);
  dir = mkdtempSync(path.join(tmpdir(), 'portcullis-nft-'));
});
afterAll(() => {
  execFileSync('ip', ['netns', 'del', ns]);
  rmSync(dir, { recursive: true, force: true });
});

describe('nftAvailable', () => {
  it('is ok as root with nft installed', async () => {
    expect(await nftAvailable({ netns: ns })).toEqual({ ok: true });
  });

  it('says clearly when nft is not installed', async () => {
    const result = await nftAvailable({ nft: path.join(dir, 'no-such-nft') });
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.why).toMatch(/nft command is not installed.*proxy still decides/);
  });

  it('says clearly when CAP_NET_ADMIN is missing', async () => {
    const wrapper = path.join(dir, 'nft-without-net-admin');
    writeFileSync(wrapper, '#!/bin/sh\nexec setpriv --bounding-set=-net_admin --inh-caps=-net_admin nft "$@"\n');
    chmodSync(wrapper, 0o755);
    const result = await nftAvailable({ nft: wrapper });
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.why).toMatch(/no CAP_NET_ADMIN.*proxy still decides/);
  });
});

describe('apply, check, read, delete', () => {
  it('a refused script throws with nft\'s own message and leaves the old ruleset', async () => {
    await applyRuleset(renderRuleset([]), { netns: ns });
    const bad = renderRuleset([]).replace('policy accept;', 'policy sideways;');
    expect((await checkRuleset(bad, { netns: ns })).ok).toBe(false);
    await expect(applyRuleset(bad, { netns: ns })).rejects.toThrow(NftError);
    await expect(applyRuleset(bad, { netns: ns })).rejects.toThrow(/sideways/);
    expect((await readCounters({ netns: ns })).map((c) => c.name)).toContain(REJECT_COUNTER);
  });

  it('reads every named counter of an applied ruleset, zeroed, with comments', async () => {
    const loaded = loadPolicyText(
      'version: 1\nnetwork_policies:\n  db:\n    endpoints:\n      - { allowed_ips: ["198.51.100.0/24"], port: 5432 }\n      - { host: db.example.test, port: 5432 }\n',
      'apply.yaml',
    );
    await applyRuleset(renderRuleset(loaded.policies), { netns: ns });
    expect(await readCounters({ netns: ns })).toEqual([
      { name: 'allow_0_0', comment: 'db/0', packets: 0, bytes: 0 },
      { name: 'allow_0_1', comment: 'db/1', packets: 0, bytes: 0 },
      { name: DNS_COUNTER, comment: 'dns proxy', packets: 0, bytes: 0 },
      { name: PROXY_COUNTER, comment: 'proxy', packets: 0, bytes: 0 },
      { name: SNI_COUNTER, comment: 'sni listener', packets: 0, bytes: 0 },
      { name: REJECT_COUNTER, comment: 'rejected: no allow matched', packets: 0, bytes: 0 },
    ]);
    await deleteRuleset({ netns: ns });
    expect(await readCounters({ netns: ns })).toEqual([]);
  });

  it('a policy name with quotes or non-ASCII cannot break the script', async () => {
    expect(counterComment('we"ird\\näme', 2)).toBe('we_ird_n_me/2');
    const loaded = loadPolicyText('version: 1\nnetwork_policies:\n  \'we"ird näme\':\n    endpoints:\n      - { allowed_ips: ["198.51.100.0/24"], port: 22 }\n', 'names.yaml');
    expect(await checkRuleset(renderRuleset(loaded.policies), { netns: ns })).toEqual({ ok: true });
  });
});
