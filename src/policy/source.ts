// From policy file text to normalised policies, with every problem located as file:line:col.
import { dirname } from 'node:path';
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { CredentialSource } from '../credentials/source.js';
import { validatePolicyDocument, type NodePath, type Problem } from './validate.js';
import type { Policy, SourceError } from './types.js';

/** A declared credential and where its `from:` is, for errors while reading its value. */
export interface LocatedCredential {
  name: string;
  source: CredentialSource;
  line: number;
  col: number;
}

export type ParseResult = { ok: true; policies: Policy[]; credentials: LocatedCredential[] } | { ok: false; errors: SourceError[] };

/** Finds the offset in the text of the node (or, with atKey, the key) at `path`. */
function offsetOf(doc: Document, path: NodePath, atKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const [i, step] of path.entries()) {
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === String(step));
      if (!pair) return offset;
      const key = pair.key as Node;
      if (last && atKey) return key.range?.[0] ?? offset;
      node = pair.value;
      offset = (pair.value as Node | null)?.range?.[0] ?? key.range?.[0] ?? offset;
    } else if (node && typeof node === 'object' && 'items' in node && Array.isArray((node as { items: unknown[] }).items)) {
      const item = (node as { items: unknown[] }).items[Number(step)];
      if (item === undefined) return offset;
      node = item;
      offset = (item as Node).range?.[0] ?? offset;
    } else return offset;
  }
  return offset;
}

export function parsePolicySource(text: string, file: string): ParseResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number, message: string): SourceError => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, col, message };
  };
  if (doc.errors.length > 0) {
    return { ok: false, errors: doc.errors.map((e) => at(e.pos[0], `YAML syntax error: ${e.message.split('\n')[0]}`)) };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, errors: [at(0, `YAML could not be read: ${(err as Error).message}`)] };
  }
  if (value === null || value === undefined) return { ok: false, errors: [at(0, 'policy file is empty')] };
  const result = validatePolicyDocument(value, dirname(file));
  if (result.ok) {
    const credentials = result.credentials.map(({ name, source, path }) => {
      const { line, col } = lineCounter.linePos(offsetOf(doc, path, false));
      return { name, source, line, col };
    });
    return { ok: true, policies: result.policies, credentials };
  }
  const errors = result.problems.map((p: Problem) => at(offsetOf(doc, p.path, p.atKey ?? false), p.message));
  errors.sort((a, b) => a.line - b.line || a.col - b.col);
  return { ok: false, errors };
}

export function formatSourceError(error: SourceError): string {
  return `${error.file}:${error.line}:${error.col}: ${error.message}`;
}
