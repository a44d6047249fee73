// Runs `nft` (the I/O edge of the nft stage): apply, check, read counters, delete. With `netns`,
// the command runs inside that network namespace (`ip netns exec NS nft …`).
import { execa } from 'execa';
import { parseCounters, type CounterReading } from './counters.js';
import { NFT_FAMILY, NFT_TABLE } from './names.js';

export interface NftTarget {
  /** Name of a network namespace (as in `ip netns list`); absent: the current one. */
  netns?: string;
  /** The nft binary (default `nft`, found on PATH). */
  nft?: string;
}

export class NftError extends Error {
  override name = 'NftError';
}

const TIMEOUT_MS = 60_000;

function command(args: string[], target: NftTarget): [string, string[]] {
  const nft = target.nft ?? 'nft';
  if (target.netns === undefined) return [nft, args];
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(target.netns)) throw new NftError(`"${target.netns}" is not a network namespace name`);
  return ['ip', ['netns', 'exec', target.netns, nft, ...args]];
}

async function runNft(args: string[], target: NftTarget, input?: string): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  const [file, argv] = command(args, target);
  const result = await execa(file, argv, { input: input ?? '', reject: false, timeout: TIMEOUT_MS, stripFinalNewline: false });
  if (result.failed && result.exitCode === undefined) {
    return { ok: false, stdout: '', stderr: result.code === 'ENOENT' ? `${file}: command not found` : String(result.message) };
  }
  return { ok: result.exitCode === 0, stdout: String(result.stdout), stderr: String(result.stderr).trim() };
}

/** Loads a script atomically (`nft -f -`); throws with nft's own message when it is refused. */
export async function applyRuleset(script: string, target: NftTarget = {}): Promise<void> {
  const r = await runNft(['-f', '-'], target, script);
  if (!r.ok) throw new NftError(`nft refused the ruleset: ${r.stderr}`);
}

/** Checks a script without loading it (`nft -c -f -`). */
export async function checkRuleset(script: string, target: NftTarget = {}): Promise<{ ok: true } | { ok: false; error: string }> {
  const r = await runNft(['-c', '-f', '-'], target, script);
  return r.ok ? { ok: true } : { ok: false, error: r.stderr };
}

/** The named counters of `table inet portcullis` (empty when the table is not loaded). */
export async function readCounters(target: NftTarget = {}): Promise<CounterReading[]> {
  const r = await runNft(['-j', 'list', 'ruleset'], target);
  if (!r.ok) throw new NftError(`cannot list the nft ruleset: ${r.stderr}`);
  return parseCounters(r.stdout);
}

/** Removes the portcullis table; absent already is fine. */
export async function deleteRuleset(target: NftTarget = {}): Promise<void> {
  const r = await runNft(['delete', 'table', NFT_FAMILY, NFT_TABLE], target);
  if (!r.ok && !/No such file or directory/.test(r.stderr)) throw new NftError(`cannot delete the nft table: ${r.stderr}`);
}

/**
 * Whether L3 enforcement can work here: the `nft` binary must exist and we must hold
 * CAP_NET_ADMIN (listing the ruleset needs it). `why` is meant to be printed once.
 */
export async function nftAvailable(target: NftTarget = {}): Promise<{ ok: true } | { ok: false; why: string }> {
  const version = await execa(target.nft ?? 'nft', ['--version'], { reject: false, timeout: TIMEOUT_MS });
  if (version.exitCode !== 0) {
    return { ok: false, why: 'the nft command is not installed (Debian: apt-get install nftables); L3 enforcement is off, the proxy still decides' };
  }
  const r = await runNft(['list', 'tables'], target);
  if (!r.ok) {
    const reason = /Operation not permitted|Permission denied/i.test(r.stderr) ? 'no CAP_NET_ADMIN' : r.stderr;
    return { ok: false, why: `nft cannot manage the ruleset (${reason}); L3 enforcement is off, the proxy still decides` };
  }
  return { ok: true };
}
