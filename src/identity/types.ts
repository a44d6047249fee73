// Who is behind a connection: the contract between the identity stage and its callers
// (the proxy, `whois`, `run`).

/** Why the `<unresolved>` sentinel was used. */
export type UnresolvedReason =
  | 'no_socket_row' // the 4-tuple is not in the namespace's TCP table
  | 'no_owner' // no process holds the socket inode
  | 'process_gone' // the owner exited while we looked
  | 'permission' // procfs refused us
  | 'ambiguous_owner' // several owners with different executables
  | 'unreadable_exe'; // /proc/<pid>/exe could not be read

export interface ConnectionTuple {
  /** The client's address and port (local in the client's socket row). */
  clientAddress: string;
  clientPort: number;
  /** The proxy's address and port as the client sees it (remote in the client's row). */
  proxyAddress: string;
  proxyPort: number;
}

export interface ResolveOptions {
  /**
   * First process of the sandbox the client lives in: its network namespace's TCP table is
   * read through /proc/<anchor>/net/…, and its descendants are searched first for the owner.
   * Omitted: the client is in the proxy's own namespace.
   */
  anchorPid?: number;
  /**
   * The connection was redirected to the proxy (nft DNAT): the client's socket row names the
   * original destination, so match on the client's address and port only.
   */
  redirected?: boolean;
}

export interface AncestorIdentity {
  pid: number;
  path: string;
  /** SHA-256 of the ancestor's executable, when it could be read. */
  sha256?: string;
}

export interface ProcessIdentity {
  /** Executable path from /proc/<pid>/exe, or "<unresolved>". */
  path: string;
  pid: number | null;
  /** Parent chain, nearest first, up to the anchor, pid 1 or 64 levels. */
  ancestors: AncestorIdentity[];
  /**
   * argv, for logs and `whois` only; never used for matching. Absent when the resolver was made
   * without it (the proxy logs none).
   */
  cmdline?: string[];
  sha256: string | null;
  unresolved_reason?: UnresolvedReason;
  /** A human-readable account of why resolution failed, for logs. */
  unresolved_detail?: string;
  /** With `ambiguous_owner`: the pids that hold the socket. */
  owner_pids?: number[];
  /** The executable was deleted or replaced after the process started (path from before). */
  exe_deleted?: boolean;
  /** Set when an executable's hash differs from the one first seen at its path. */
  integrity_violation?: string;
  /** For redirected connections: where the client meant to go. */
  original_destination?: { address: string; port: number };
}
