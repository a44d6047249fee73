// OPA's digest of a structured bundle file (data.json, data.yaml, .manifest): not the file's
// bytes but its value, written canonically — object keys sorted (byte order of their UTF-8),
// no whitespace, numbers exactly as written, strings as Go's JSON encoder writes them without
// HTML escaping. Signatures made by `opa build --signing-key` verify only against this. Pure.
import { createHash } from 'node:crypto';

type Value = { kind: 'object'; entries: Array<[string, Value]> } | { kind: 'array'; items: Value[] } | { kind: 'string'; value: string } | { kind: 'literal'; text: string };

export class StructuredFileError extends Error {
  override name = 'StructuredFileError';
}

/** A JSON reader that keeps each number's text (1.50 stays 1.50, as Go's json.Number does). */
function parse(text: string): Value {
  let at = 0;
  const fail = (what: string): never => {
    throw new StructuredFileError(`invalid JSON at offset ${at}: ${what}`);
  };
  const space = (): void => {
    while (at < text.length && ' \t\n\r'.includes(text[at]!)) at++;
  };
  const value = (depth: number): Value => {
    if (depth > 1000) fail('nested too deeply');
    space();
    const c = text[at];
    if (c === '{') return object(depth);
    if (c === '[') return array(depth);
    if (c === '"') return { kind: 'string', value: string() };
    const literal = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(at, at + 400));
    if (!literal) return fail('unexpected character');
    at += literal[0].length;
    return { kind: 'literal', text: literal[0] };
  };
  const string = (): string => {
    const end = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(text.slice(at));
    if (!end) return fail('bad string');
    at += end[0].length;
    return JSON.parse(end[0]) as string;
  };
  const object = (depth: number): Value => {
    at++;
    const entries: Array<[string, Value]> = [];
    space();
    if (text[at] === '}') return at++, { kind: 'object', entries };
    for (;;) {
      space();
      if (text[at] !== '"') fail('expected a key');
      const key = string();
      space();
      if (text[at++] !== ':') fail('expected ":"');
      entries.push([key, value(depth + 1)]);
      space();
      const next = text[at++];
      if (next === '}') return { kind: 'object', entries };
      if (next !== ',') fail('expected "," or "}"');
    }
  };
  const array = (depth: number): Value => {
    at++;
    const items: Value[] = [];
    space();
    if (text[at] === ']') return at++, { kind: 'array', items };
    for (;;) {
      items.push(value(depth + 1));
      space();
      const next = text[at++];
      if (next === ']') return { kind: 'array', items };
      if (next !== ',') fail('expected "," or "]"');
    }
  };
  const result = value(0);
  space();
  if (at !== text.length) fail('trailing characters');
  return result;
}

/** A string as Go's encoder writes it with SetEscapeHTML(false). */
export function goJsonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (code < 0x20 || code === 0x2028 || code === 0x2029) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else if (code >= 0xd800 && code <= 0xdfff) out += '\ufffd';
    else out += ch;
  }
  return `${out}"`;
}

function write(v: Value): string {
  switch (v.kind) {
    case 'literal':
      return v.text;
    case 'string':
      return goJsonString(v.value);
    case 'array':
      return `[${v.items.map(write).join(',')}]`;
    case 'object': {
      // Go sorts keys as byte strings; a later duplicate key wins, as in Go's decoder.
      const byKey = new Map(v.entries);
      const keys = [...byKey.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      return `{${keys.map((k) => `${goJsonString(k)}:${write(byKey.get(k)!)}`).join(',')}}`;
    }
  }
}

/** The canonical text OPA hashes for a JSON file. */
export function canonicalJson(text: string): string {
  return write(parse(text));
}

/** OPA's digest of a structured file, hex. */
export function structuredDigest(text: string, algorithm = 'sha256'): string {
  return createHash(algorithm).update(canonicalJson(text)).digest('hex');
}
