// /proc/net/tcp{,6} text: a full parser (for `whois` and the tests) and a matcher that finds one
// row by its endpoints without building objects for the others (the per-connection hot path).
// Pure: the caller reads the file and feeds text in.
import { decodeEndpoint, type Endpoint } from './proc-net-address.js';

/** TCP states as the kernel numbers them (include/net/tcp_states.h). */
export const TCP_ESTABLISHED = 0x01;
export const TCP_LISTEN = 0x0a;

export interface SocketRow {
  local: Endpoint;
  remote: Endpoint;
  state: number;
  uid: number;
  /** 0 when no file refers to the socket any more (orphaned). */
  inode: number;
}

export interface ParsedTable {
  rows: SocketRow[];
  /** Lines that were neither the header nor a well-formed row; skipped. */
  malformed: number;
}

/** Parses one row; null when the line is not a well-formed row. */
export function parseSocketRow(line: string): SocketRow | null {
  const fields = line.trim().split(/\s+/);
  if (fields.length < 10 || !/^\d+:$/.test(fields[0]!)) return null;
  const local = decodeEndpoint(fields[1]!);
  const remote = decodeEndpoint(fields[2]!);
  if (!local || !remote || !/^[0-9A-Fa-f]{2}$/.test(fields[3]!)) return null;
  if (!/^\d+$/.test(fields[7]!) || !/^\d+$/.test(fields[9]!)) return null;
  return { local, remote, state: parseInt(fields[3]!, 16), uid: Number(fields[7]), inode: Number(fields[9]) };
}

export function parseSocketTable(text: string): ParsedTable {
  const rows: SocketRow[] = [];
  let malformed = 0;
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('sl ')) continue;
    const row = parseSocketRow(line);
    if (row) rows.push(row);
    else malformed += 1;
  }
  return { rows, malformed };
}

/**
 * Finds the ESTABLISHED row whose local end is `local` (and remote end `remote`, when given),
 * both in the table's own spelling (see encodeEndpoint). Text may arrive in chunks split
 * anywhere; a row is only examined once its line is complete.
 */
export class SocketRowMatcher {
  private readonly needle: string;
  private carry = '';

  constructor(local: string, remote: string | null) {
    // The local column is the only one preceded by ": " (after the slot number), so this needle
    // cannot match a row in which our endpoint is the remote end.
    this.needle = remote === null ? `: ${local} ` : `: ${local} ${remote} `;
  }

  /** Feeds the next chunk; returns the matching row as soon as it is complete. */
  feed(chunk: string): SocketRow | null {
    const text = this.carry + chunk;
    const lastNewline = text.lastIndexOf('\n');
    if (lastNewline < 0) {
      this.carry = text;
      return null;
    }
    this.carry = text.slice(lastNewline + 1);
    return this.search(text, lastNewline);
  }

  /** The end of the file: examines a last line that had no newline. */
  finish(): SocketRow | null {
    const text = this.carry;
    this.carry = '';
    return this.search(text, text.length);
  }

  private search(text: string, end: number): SocketRow | null {
    let at = text.indexOf(this.needle);
    while (at >= 0 && at < end) {
      const lineStart = text.lastIndexOf('\n', at) + 1;
      const lineEnd = text.indexOf('\n', at);
      const row = parseSocketRow(text.slice(lineStart, lineEnd < 0 ? text.length : lineEnd));
      if (row && row.state === TCP_ESTABLISHED) return row;
      at = text.indexOf(this.needle, at + 1);
    }
    return null;
  }
}
