// Host pattern matching: the one TypeScript answer to "does this endpoint host name that host?",
// for everything outside the Rego (the DNS proxy's coverage, tests). Pure.
//
// The semantics are the Rego's (policies/portcullis/authz.rego, `host_matches`); test/host-match
// and the parity vectors hold the two to the same answers:
// - an exact pattern equals the host;
// - `*` matches a run of characters inside one label, never a dot, and never a whole empty label
//   (`*.example.com` does not match `.example.com`); `api-*` matches `api-` and `api-eu`;
// - `**`, only as the whole first label, matches one or more non-empty labels.
// Both sides are canonical: the pattern as parseHostPattern returns it, the host as
// canonicalRequestHost or canonicalQueryName return it (lower-case punycode, no trailing dot).

/** A compiled host pattern: tests canonical hosts. */
export type HostMatcher = (host: string) => boolean;

const escapeLiteral = (text: string): string => text.replace(/[.\\^$+?()[\]{}|-]/g, '\\$&');

function labelSource(label: string, first: boolean): string {
  if (first && label === '**') return '[^.]+(?:\\.[^.]+)*';
  // A label of stars alone stands for a whole label, which is never empty.
  if (/^\*+$/.test(label)) return '[^.]+';
  return label.split('*').map(escapeLiteral).join('[^.]*');
}

/** The regular expression over a whole host that a canonical pattern stands for. */
export function hostPatternRegex(pattern: string): RegExp {
  const labels = pattern.split('.').map((label, i) => labelSource(label, i === 0));
  return new RegExp(`^${labels.join('\\.')}$`);
}

/** Compiles a canonical pattern (exact or wildcard) once, for many hosts. */
export function compileHostPattern(pattern: string): HostMatcher {
  if (!pattern.includes('*')) return (host) => host === pattern;
  const regex = hostPatternRegex(pattern);
  return (host) => regex.test(host);
}

/** Whether a canonical pattern matches a canonical host. */
export function hostMatches(pattern: string, host: string): boolean {
  return compileHostPattern(pattern)(host);
}

/**
 * The literal labels after a wildcard pattern's last wildcard label (`example.com` for
 * `*.example.com` and `**.a-*.example.com`): the key the data document's index files it under.
 * Every host it matches ends with `.` and this suffix.
 */
export function wildcardSuffix(pattern: string): string {
  const labels = pattern.split('.');
  const last = labels.reduce((at, label, i) => (label.includes('*') ? i : at), -1);
  return labels.slice(last + 1).join('.');
}
