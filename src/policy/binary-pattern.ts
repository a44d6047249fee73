// Binary path globs: `*` inside one path segment, `**` across segments. Pure.

export type BinaryPatternResult = { ok: true; pattern: string } | { ok: false; message: string };

/** Characters that are glob syntax in OPA's glob.match but not part of our pattern language. */
const RESERVED = /[?[\]{}\\]/;

export function parseBinaryPattern(raw: string): BinaryPatternResult {
  if (raw === '') return { ok: false, message: 'binary path is empty' };
  if (!raw.startsWith('/')) {
    return { ok: false, message: `binary path "${raw}" must be absolute (start with "/"); the kernel reports absolute paths` };
  }
  if (RESERVED.test(raw)) {
    return { ok: false, message: `binary path "${raw}" contains ?, [, ], {, } or \\; only "*" and "**" are wildcards` };
  }
  if (raw.includes('\0')) return { ok: false, message: 'binary path contains a NUL byte' };
  if (/\*{3,}/.test(raw)) return { ok: false, message: `binary path "${raw}": use "*" or "**", not "***"` };
  if (raw.split('/').some((seg) => seg === '.' || seg === '..')) {
    return { ok: false, message: `binary path "${raw}" contains "." or ".." segments; write the resolved path` };
  }
  return { ok: true, pattern: raw };
}
