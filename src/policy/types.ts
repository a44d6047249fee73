// The normalised policy: what the loader produces from YAML and what every later stage reads
// (the Rego data document, the nft compiler, the DNS proxy). Hosts are lower-case ASCII
// (punycode), without a trailing dot; ports are always arrays.

/** How an endpoint names its destination. */
export type HostKind = 'exact' | 'wildcard' | 'none';

export interface L7Rule {
  /** Upper-case HTTP method, or "*" for any. */
  method: string;
  /** Path glob: `*` inside one segment, `**` across segments. */
  path: string;
}

export interface Endpoint {
  /** Lower-case ASCII host or host pattern; null for a hostless `allowed_ips` endpoint. */
  host: string | null;
  host_kind: HostKind;
  ports: number[];
  /** "rest" turns on L7 method/path rules; "" means plain L4. */
  protocol: '' | 'rest';
  /**
   * TLS on this endpoint: terminated and every request decided ("inspect", the default for
   * rest endpoints), or relayed as an opaque tunnel ("passthrough", the default otherwise).
   */
  tls: 'inspect' | 'passthrough';
  enforcement: 'enforce' | 'audit';
  /** Allow rules, the `access` preset already expanded into them. */
  rules: L7Rule[];
  deny_rules: L7Rule[];
  /** Canonical CIDRs (`a.b.c.d/n`, `x::/n`); empty means no address constraint. */
  allowed_ips: string[];
  /**
   * Names of the credentials whose placeholders are swapped in requests allowed here (names
   * only: the values never enter the data document). Present only when the endpoint binds some.
   */
  credentials?: string[];
  /** Swap them in plain-HTTP requests too (present only with `credentials`). */
  allow_cleartext_credentials?: boolean;
  /** Swap them in request bodies too (present only with `credentials`). */
  credentials_in_body?: boolean;
}

export interface Policy {
  /** The reported name (`name:` or the key). */
  name: string;
  /** Absolute path globs; empty means any binary, including `<unresolved>`. */
  binaries: string[];
  endpoints: Endpoint[];
}

/** A pointer into the policy table: [policy name, endpoint index]. */
export type EndpointRef = [string, number];

export interface PolicyIndex {
  /** Exact host → endpoints naming it. */
  exact: Record<string, EndpointRef[]>;
  /** Literal suffix after the last wildcard label (`example.com` for `*.example.com`) → endpoints. */
  wildcard: Record<string, EndpointRef[]>;
  /** Port (as a string) → hostless `allowed_ips` endpoints on it. */
  hostless: Record<string, EndpointRef[]>;
}

/** The data document the Rego reads at `data.portcullis`. */
export interface PolicyData {
  policies: Record<string, Policy>;
  index: PolicyIndex;
}

/** Where in the source file a problem is. Lines and columns count from 1. */
export interface SourceError {
  file: string;
  line: number;
  col: number;
  message: string;
}

/** The sentinel for a caller whose identity could not be resolved. */
export const UNRESOLVED = '<unresolved>';

/** Input of one decision, as the Rego reads it. */
export interface DecisionInput {
  exec: { path: string; ancestors: Array<string | { pid?: number; path: string }> };
  network: { host: string; port: number; addresses?: string[] };
  request?: { method: string; path: string };
}

export interface Decision {
  allow: boolean;
  decision: 'allow' | 'deny' | 'audit';
  reason: string;
  policy: string | null;
  /**
   * True when every address given lies in the `allowed_ips` of an endpoint: for an allow or
   * audit, one the decision rests on; for a deny, any endpoint matching host and port (what
   * report-only mode's SSRF check needs). Not part of the printed decision.
   */
  explicit_ips?: boolean;
  /** On an allow or audit: the tunnel is to be TLS-inspected (some endpoint letting it through has tls: inspect). */
  inspect?: boolean;
  /** On an allow only: credentials bound by the allowing endpoints (absent when none binds any). */
  credentials?: string[];
  /** Those of them the allowing endpoints let travel in plain HTTP. */
  cleartext_credentials?: string[];
  /** Those of them the allowing endpoints let travel in request bodies. */
  body_credentials?: string[];
}
