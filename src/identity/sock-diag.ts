// Exact socket lookups through the kernel's sock_diag interface: in process through the native
// addon when it is built (native-sock-diag.ts), else via the helper child process
// (sock-diag-helper.ts). Optional: when neither works, callers fall back to reading
// /proc/net/tcp{,6}.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { loadSockDiagAddon, NativeSockDiag } from './native-sock-diag.js';
import { canonicalAddress } from './proc-net-address.js';
import { SOCK_DIAG_HELPER } from './sock-diag-helper.js';
import type { ConnectionTuple } from './types.js';

interface DiagRequest {
  anchorPid: number | undefined;
  family: 4 | 6;
  /** The client's end. */
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

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

  private native: NativeSockDiag | null;

  constructor(
    options: { native?: boolean } = {},
    private readonly python = process.env.PORTCULLIS_PYTHON ?? 'python3',
  ) {
    const addon = options.native === false ? null : loadSockDiagAddon();
    this.native = addon ? new NativeSockDiag(addon) : null;
  }

  /** Which way lookups go now. */
  get via(): 'native' | 'helper' | 'none' {
    return this.native ? 'native' : this.broken ? 'none' : 'helper';
  }

  /**
   * The socket whose local end is the client's and remote end the proxy's, in the network
   * namespace of `anchorPid` (or ours). IPv4 clients are also looked for as IPv4-mapped IPv6.
   */
  async lookup(tuple: ConnectionTuple, anchorPid?: number): Promise<DiagAnswer> {
    const client = canonicalAddress(tuple.clientAddress);
    const proxy = canonicalAddress(tuple.proxyAddress);
    if (!client || !proxy || client.kind !== proxy.kind) return 'unavailable';
    const request = { anchorPid, src: client.text, sport: tuple.clientPort, dst: proxy.text, dport: tuple.proxyPort };
    if (client.kind === 'ipv6') return this.ask({ ...request, family: 6 });
    const v4 = await this.ask({ ...request, family: 4 });
    if (v4 !== 'missing') return v4;
    return this.ask({ ...request, family: 6, src: `::ffff:${client.text}`, dst: `::ffff:${proxy.text}` });
  }

  /** Stops the helper for good. */
  close(): void {
    this.native?.close();
    this.native = null;
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

  private ask(request: DiagRequest): Promise<DiagAnswer> {
    if (this.native) return Promise.resolve(this.askNative(request));
    const child = this.helper();
    if (!child) return Promise.resolve('unavailable');
    const id = this.nextId++;
    const { anchorPid, ...rest } = request;
    const line = JSON.stringify({ id, ns: anchorPid === undefined ? null : `/proc/${anchorPid}/ns/net`, ...rest });
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.fail(), ANSWER_TIMEOUT_MS);
      this.pending.set(id, { resolve, timer });
      child.stdin.write(`${line}\n`);
    });
  }

  private askNative(request: DiagRequest): DiagAnswer {
    try {
      const found = this.native!.lookup(request.anchorPid, request.family, request.src, request.sport, request.dst, request.dport);
      this.errorsInARow = 0;
      return found ? { state: found[0], inode: found[1] } : 'missing';
    } catch {
      // As with the helper: a lookup that can only fail (no netlink, no right to enter the
      // namespace) is not worth making; after a few in a row, the helper process is tried.
      if (++this.errorsInARow >= MAX_FAILURES) {
        this.native?.close();
        this.native = null;
        this.errorsInARow = 0;
      }
      return 'unavailable';
    }
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
