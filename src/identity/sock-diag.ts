// Exact socket lookups through the kernel's sock_diag interface, via the helper child process
// (sock-diag-helper.ts). Optional: when python3 or netlink is not available, or the helper
// misbehaves, callers fall back to reading /proc/net/tcp{,6}.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { canonicalAddress } from './proc-net-address.js';
import { SOCK_DIAG_HELPER } from './sock-diag-helper.js';
import type { ConnectionTuple } from './types.js';

export type DiagAnswer = { inode: number; state: number } | 'missing' | 'unavailable';

interface Pending {
  resolve: (answer: DiagAnswer) => void;
  timer: NodeJS.Timeout;
}

const ANSWER_TIMEOUT_MS = 2_000;
const MAX_FAILURES = 3;

export class SockDiag {
  private child: ChildProcessWithoutNullStreams | null = null;
  private broken = false;
  private failures = 0;
  private errorsInARow = 0;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly python = process.env.PORTCULLIS_PYTHON ?? 'python3') {}

  /**
   * The socket whose local end is the client's and remote end the proxy's, in the network
   * namespace of `anchorPid` (or ours). IPv4 clients are also looked for as IPv4-mapped IPv6.
   */
  async lookup(tuple: ConnectionTuple, anchorPid?: number): Promise<DiagAnswer> {
    const client = canonicalAddress(tuple.clientAddress);
    const proxy = canonicalAddress(tuple.proxyAddress);
    if (!client || !proxy || client.kind !== proxy.kind) return 'unavailable';
    const ns = anchorPid === undefined ? null : `/proc/${anchorPid}/ns/net`;
    const request = { ns, src: client.text, sport: tuple.clientPort, dst: proxy.text, dport: tuple.proxyPort };
    if (client.kind === 'ipv6') return this.ask({ ...request, family: 6 });
    const v4 = await this.ask({ ...request, family: 4 });
    if (v4 !== 'missing') return v4;
    return this.ask({ ...request, family: 6, src: `::ffff:${client.text}`, dst: `::ffff:${proxy.text}` });
  }

  /** Stops the helper for good. */
  close(): void {
    this.stop();
    this.broken = true;
  }

  private stop(): void {
    this.child?.stdin.end();
    this.child?.kill();
    this.child = null;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.resolve('unavailable');
    }
    this.pending.clear();
  }

  private ask(request: Record<string, unknown>): Promise<DiagAnswer> {
    const child = this.helper();
    if (!child) return Promise.resolve('unavailable');
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.fail(), ANSWER_TIMEOUT_MS);
      this.pending.set(id, { resolve, timer });
      child.stdin.write(`${JSON.stringify({ id, ...request })}\n`);
    });
  }

  private helper(): ChildProcessWithoutNullStreams | null {
    if (this.broken) return null;
    if (this.child) return this.child;
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(this.python, ['-c', SOCK_DIAG_HELPER], { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch {
      this.broken = true;
      return null;
    }
    const failIfCurrent = (): void => {
      if (this.child === child) this.fail();
    };
    child.on('error', failIfCurrent);
    child.on('exit', failIfCurrent);
    child.stdin.on('error', failIfCurrent);
    child.stderr.resume();
    // The helper must not keep the process alive on its own.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    createInterface({ input: child.stdout }).on('line', (line) => this.answer(line));
    this.child = child;
    return child;
  }

  private answer(line: string): void {
    let reply: { id?: number; state?: number; inode?: number; missing?: boolean; error?: string };
    try {
      reply = JSON.parse(line) as typeof reply;
    } catch {
      return;
    }
    const pending = reply.id === undefined ? undefined : this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id!);
    clearTimeout(pending.timer);
    if (reply.missing) pending.resolve('missing');
    else if (typeof reply.inode === 'number' && typeof reply.state === 'number') pending.resolve({ inode: reply.inode, state: reply.state });
    else pending.resolve('unavailable');
    // A helper that can only report errors (no netlink here, no right to enter namespaces)
    // is not worth asking: after a few in a row, stop.
    this.errorsInARow = reply.error === undefined ? 0 : this.errorsInARow + 1;
    if (this.errorsInARow >= MAX_FAILURES) this.close();
  }

  /**
   * The helper died, timed out or could not start: pending lookups are answered "unavailable"
   * (the caller reads procfs instead); it is restarted on the next lookup, up to a few times.
   */
  private fail(): void {
    if (this.broken || !this.child) return;
    this.stop();
    this.failures += 1;
    this.broken = this.failures >= MAX_FAILURES;
  }
}
