// Types of the nft lab (lab.mjs, plain JavaScript shared with the benchmark), for the tests.
export interface Tuple {
  address: string;
  port: number;
  udp?: boolean;
  connected?: boolean;
}

export interface Session {
  next(): Promise<string>;
  ping(): Promise<string>;
  close(): void;
}

export interface Lab {
  /** The client namespace (the sandbox side) and the server namespace. */
  cli: string;
  srv: string;
  link: unknown;
  tcpPorts: number[];
  udpPort: number;
  /** Runs `nft ARGS` in the client namespace (stdin: `input`); returns stdout. */
  nft(args: string[], input?: string): Promise<string>;
  /** The client namespace's connection-tracking table, one entry a line (/proc/net/nf_conntrack). */
  conntrack(): Promise<string[]>;
  /** Tries tuples from the client namespace; one result (or error code) per tuple. */
  probe(tuples: Tuple[], opts?: { timeoutMs?: number; concurrency?: number }): Promise<string[]>;
  /** A long-lived connection from the client namespace. */
  session(address: string, port: number): Promise<Session>;
  close(): Promise<void>;
  closeSync(): void;
}

/** Creates the lab; `close()` removes it (also on process exit). */
export function createLab(options?: { listeners?: number; extraV4Ranges?: string[] }): Promise<Lab>;
