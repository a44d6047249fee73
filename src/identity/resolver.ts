// Who is behind an accepted connection: socket (sock_diag exact lookup, or the namespace's
// /proc/net/tcp{,6} table) → socket inode → owning process → executable, ancestors and
// hashes. Every failure yields the `<unresolved>` sentinel with a reason; nothing here throws
// to the caller.
import { UNRESOLVED } from '../policy/types.js';
import { AncestryCache, type Ancestry } from './ancestry.js';
import { HashStore } from './hash-store.js';
import { BinaryIntegrity, type HashResult } from './integrity.js';
import { FdSnapshots } from './fd-snapshots.js';
import { kernelRelatives } from './kernel-relatives.js';
import { LookupReads } from './lookup-reads.js';
import { NativeProcfs } from './native-procfs.js';
import { findSocketOwners } from './owner.js';
import { PinnedOwners } from './pinned-owners.js';
import { readAncestorPids, readCmdline, readExecutable, type ExecutablePath } from './process-info.js';
import { ProcessStartClock } from './process-start.js';
import { ProcessTable } from './process-table.js';
import type { Endpoint } from './proc-net-address.js';
import { SockDiag } from './sock-diag.js';
import { findClientSocket } from './socket-lookup.js';
import { TCP_ESTABLISHED } from './socket-table.js';
import type { AncestorIdentity, ConnectionTuple, ProcessIdentity, ResolveOptions } from './types.js';
import { UnresolvedError, unresolvedFromFsError } from './unresolved.js';

export interface IdentityResolverOptions {
  /**
   * Read every process's fd table to find all holders of a socket, instead of stopping at the
   * first holder and its fork family. Slower; also catches a socket passed to an unrelated process.
   */
  exhaustiveOwnerSearch?: boolean;
  /**
   * Where socket rows come from. `auto` (default): the kernel's sock_diag exact lookup through a
   * helper process when it works, /proc/net/tcp{,6} otherwise and for redirected connections.
   * `procfs`: always the tables.
   */
  socketSource?: 'auto' | 'procfs';
  /** A file that keeps executables' hashes between runs (see hash-store.ts); none by default. */
  hashStore?: string;
  /**
   * Read each owner's argv (default true). Only logs and `whois` show it: the proxy turns it
   * off and saves the three system calls per connection.
   */
  cmdline?: boolean;
  /**
   * Read procfs through the native addon when it is built (default true): an fd table, or a
   * process with its parents, per call. false: from JavaScript, as where no compiler is.
   */
  nativeProcfs?: boolean;
}

const RECENT_OWNERS = 8;
/** Connections resolved and not yet released, remembered for their socket's inode. */
const MAX_OPEN_CONNECTIONS = 8192;

function connectionKey(tuple: ConnectionTuple, anchorPid: number | undefined): string {
  return `${anchorPid ?? ''}|${tuple.clientAddress}|${tuple.clientPort}|${tuple.proxyAddress}|${tuple.proxyPort}`;
}

/** Reads each process's executable once per lookup: the owner search and the choice of owner both ask. */
function executableReader(): (pid: number) => ExecutablePath {
  const reads = new Map<number, { exe: ExecutablePath } | { error: unknown }>();
  return (pid) => {
    let read = reads.get(pid);
    if (!read) {
      try {
        read = { exe: readExecutable(pid) };
      } catch (error) {
        read = { error };
      }
      reads.set(pid, read);
    }
    if ('error' in read) throw read.error;
    return read.exe;
  };
}

export class IdentityResolver {
  private readonly processes = new ProcessTable();
  private readonly fdSnapshots: FdSnapshots;
  private readonly startClock = new ProcessStartClock();
  private readonly kernelRelatives = kernelRelatives();
  private readonly hashStore: HashStore | undefined;
  private readonly integrity: BinaryIntegrity;
  private readonly ancestries: AncestryCache;
  private recentOwners: number[] = [];
  private readonly sockDiag: SockDiag | null;
  private readonly openConnections = new Map<string, number>();
  private readonly native: NativeProcfs | null;
  /** The recent owners held open (native reads only). */
  private readonly pins: PinnedOwners | null;

  constructor(private readonly options: IdentityResolverOptions = {}) {
    this.native = options.nativeProcfs === false ? null : NativeProcfs.load();
    this.pins = this.native ? new PinnedOwners(this.native) : null;
    this.fdSnapshots = new FdSnapshots('/proc', undefined, undefined, this.native);
    this.sockDiag = options.socketSource === 'procfs' ? null : new SockDiag();
    this.hashStore = options.hashStore === undefined ? undefined : new HashStore(options.hashStore);
    this.integrity = new BinaryIntegrity(this.hashStore);
    this.ancestries = new AncestryCache(this.integrity);
  }

  /** Stops the sock_diag helper, if one was started, and closes the files kept open. */
  close(): void {
    this.hashStore?.flush();
    this.processes.close();
    this.pins?.close();
    this.sockDiag?.close();
  }

  /** The client socket's inode (and, when redirected, where it was going). */
  private async findSocket(tuple: ConnectionTuple, anchorPid: number | undefined, redirected: boolean): Promise<{ inode: number; remote: Endpoint | null }> {
    if (!redirected && this.sockDiag) {
      const answer = await this.sockDiag.lookup(tuple, anchorPid);
      if (typeof answer === 'object' && answer.state === TCP_ESTABLISHED) return { inode: answer.inode, remote: null };
      // Not there, or no helper: the tables decide (they also see sockets bound to a device,
      // which an exact lookup without the interface index misses).
    }
    const procRoot = anchorPid === undefined ? '/proc/self' : `/proc/${anchorPid}`;
    const { row } = await findClientSocket(tuple, { procRoot, redirected });
    return { inode: row.inode, remote: row.remote };
  }

  /**
   * The proxy is done with a connection it asked about: the fd that held the client's end is
   * probably free, and where that client's next socket will be (see fd-snapshots.ts).
   */
  released(tuple: ConnectionTuple, options: ResolveOptions = {}): void {
    const key = connectionKey(tuple, options.anchorPid);
    const inode = this.openConnections.get(key);
    if (inode === undefined) return;
    this.openConnections.delete(key);
    this.fdSnapshots.released(inode);
  }

  private rememberConnection(key: string, inode: number): void {
    this.openConnections.set(key, inode);
    if (this.openConnections.size > MAX_OPEN_CONNECTIONS) {
      const [oldest] = this.openConnections.keys();
      if (oldest !== undefined) this.openConnections.delete(oldest);
    }
  }

  /**
   * Does now what the first lookup would otherwise pay for: the listing of every process (later
   * lookups read only the processes started since) and the load of the hash store. For a
   * service to call once it is up, before its first connection.
   */
  async warm(): Promise<void> {
    this.hashStore?.preload();
    await this.processes.refresh();
  }

  /** Lookups whose owner was found through a process held open (the native fast path). */
  get pinnedLookups(): number {
    return this.pins?.found ?? 0;
  }

  /** Native reads of a process by pid so far (see NativeProcfs.chainReads); 0 without the addon. */
  get processReadsByPid(): number {
    return this.native?.chainReads ?? 0;
  }

  /** Files read and hashed so far (the rest came from the fingerprint cache). */
  get filesHashed(): number {
    return this.integrity.filesHashed;
  }

  async resolve(tuple: ConnectionTuple, options: ResolveOptions = {}): Promise<ProcessIdentity> {
    const anchorPid = options.anchorPid;
    // The connection was accepted before this call: the client's socket exists by now.
    const startedAt = performance.now();
    const reads = this.native ? new LookupReads(this.native, anchorPid, this.pins) : null;
    const executable = reads ? (pid: number) => reads.executable(pid) : executableReader();
    let originalDestination: ProcessIdentity['original_destination'];
    let ownerPids: number[] | undefined;
    try {
      if (anchorPid !== undefined && !(Number.isInteger(anchorPid) && anchorPid > 0)) {
        throw new UnresolvedError('no_socket_row', `anchor pid ${String(anchorPid)} is not a pid`);
      }
      const socket = await this.findSocket(tuple, anchorPid, options.redirected === true);
      if (options.redirected && socket.remote) originalDestination = { address: socket.remote.address, port: socket.remote.port };
      if (socket.inode === 0) throw new UnresolvedError('no_owner', 'the socket is no longer attached to a file');
      const owners = await findSocketOwners({
        inode: socket.inode,
        table: this.processes,
        ...(anchorPid !== undefined ? { anchorPid } : {}),
        recentOwners: this.recentOwners,
        selfPid: process.pid,
        executableOf: (pid) => {
          try {
            return executable(pid).path;
          } catch {
            return undefined;
          }
        },
        snapshots: this.fdSnapshots,
        kernel: this.kernelRelatives,
        notBefore: startedAt,
        notBeforeStartOf: (pid) => (reads ? this.startFromReads(reads, pid) : this.startClock.notBeforeStartOf(pid)),
        notBeforeStart: (startTime) => this.startClock.notBeforeStart(startTime),
        exhaustive: this.options.exhaustiveOwnerSearch === true,
        ...(reads && this.pins ? { probeRecent: (candidates: readonly number[]) => this.pins!.probe(socket.inode, candidates, startedAt, this.fdSnapshots, reads) } : {}),
      });
      ownerPids = owners.pids;
      this.rememberConnection(connectionKey(tuple, anchorPid), socket.inode);
      const { pid, exe } = this.chooseOwner(ownerPids, anchorPid, executable);
      const identity = reads ? await this.describeFromReads(pid, exe, anchorPid, reads) : await this.describe(pid, exe, anchorPid, owners.relatives.parentOf(pid));
      this.remember(pid, reads);
      return originalDestination ? { ...identity, original_destination: originalDestination } : identity;
    } catch (err) {
      const failure = err instanceof UnresolvedError ? err : unresolvedFromFsError(err, 'no_owner', 'resolving the connection');
      return {
        path: UNRESOLVED,
        pid: null,
        ancestors: [],
        cmdline: [],
        sha256: null,
        unresolved_reason: failure.reason,
        unresolved_detail: failure.message,
        ...(failure.reason === 'ambiguous_owner' && ownerPids ? { owner_pids: ownerPids } : {}),
        ...(originalDestination ? { original_destination: originalDestination } : {}),
      };
    }
  }

  /**
   * One owner, or several running the same executable where one is the fork parent of the
   * rest (its identity is the part they share). Different executables: ambiguous, no guess.
   */
  private chooseOwner(owners: number[], anchorPid: number | undefined, executable: (pid: number) => ExecutablePath): { pid: number; exe: ExecutablePath } {
    const live: Array<{ pid: number; exe: ExecutablePath }> = [];
    let lastError: unknown;
    for (const pid of owners) {
      try {
        live.push({ pid, exe: executable(pid) });
      } catch (err) {
        if (err instanceof UnresolvedError && err.reason === 'process_gone') continue;
        lastError = err;
      }
    }
    if (live.length === 0) throw lastError ?? new UnresolvedError('process_gone', 'the owner exited during resolution');
    if (live.length === 1 && lastError === undefined) return live[0]!;
    // An owner whose executable we cannot read might be anything: as ambiguous as a different one.
    if (lastError !== undefined || new Set(live.map((o) => o.exe.path)).size > 1) {
      throw new UnresolvedError('ambiguous_owner', `${owners.length} processes with different executables hold the socket`);
    }
    const chains = new Map(live.map((o) => [o.pid, readAncestorPids(o.pid, anchorPid)]));
    const root = live.find((candidate) => live.every((o) => o.pid === candidate.pid || chains.get(o.pid)!.includes(candidate.pid)));
    if (!root) throw new UnresolvedError('ambiguous_owner', `${live.length} unrelated processes hold the socket`);
    return root;
  }

  private startFromReads(reads: LookupReads, pid: number): number | undefined {
    try {
      return this.startClock.notBeforeStart(reads.process(pid).startTime);
    } catch {
      return undefined;
    }
  }

  /** describe() from this lookup's native reads: the owner's executable and fingerprint were read together. */
  private async describeFromReads(pid: number, exe: ExecutablePath, anchorPid: number | undefined, reads: LookupReads): Promise<ProcessIdentity> {
    const owner = reads.process(pid);
    const cmdline = this.options.cmdline === false ? undefined : readCmdline(pid);
    const [own, ancestry] = await Promise.all([
      this.integrity.checkFingerprinted(pid, exe.path, owner.fingerprint!).catch((err: unknown) => {
        throw unresolvedFromFsError(err, 'unreadable_exe', `hashing ${exe.path}`);
      }),
      this.ancestries.ofRead(owner, anchorPid, reads, this.native!),
    ]);
    return this.identityOf(pid, exe, cmdline, own, ancestry);
  }

  private async describe(pid: number, exe: ExecutablePath, anchorPid: number | undefined, knownParent: number | undefined): Promise<ProcessIdentity> {
    const cmdline = this.options.cmdline === false ? undefined : readCmdline(pid);
    const [own, ancestry] = await Promise.all([
      this.integrity.check(pid, exe.path).catch((err: unknown) => {
        throw unresolvedFromFsError(err, 'unreadable_exe', `hashing ${exe.path}`);
      }),
      this.ancestries.of(pid, anchorPid, knownParent),
    ]);
    return this.identityOf(pid, exe, cmdline, own, ancestry);
  }

  private identityOf(pid: number, exe: ExecutablePath, cmdline: string[] | undefined, own: HashResult, ancestry: Ancestry): ProcessIdentity {
    const violations = [...(own.violation ? [own.violation] : []), ...ancestry.violations];
    return {
      path: exe.path,
      pid,
      // Copies: the kept ancestry is shared between lookups.
      ancestors: ancestry.ancestors.map((a) => ({ ...a })),
      ...(cmdline ? { cmdline } : {}),
      sha256: own.sha256,
      ...(exe.deleted ? { exe_deleted: true } : {}),
      ...(violations.length > 0 ? { integrity_violation: violations.join('; ') } : {}),
    };
  }

  private remember(pid: number, reads: LookupReads | null): void {
    const again = this.recentOwners.includes(pid);
    this.recentOwners = [pid, ...this.recentOwners.filter((p) => p !== pid)].slice(0, RECENT_OWNERS);
    if (!this.pins || !reads) return;
    this.pins.keepOnly(this.recentOwners);
    // Held open from its second connection on: most clients connect once (a new process per
    // connection), and holding those open would cost more than it saves.
    if (again) this.pins.pin(reads.process(pid));
  }
}
