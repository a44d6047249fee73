// The environment CMD runs with: the caller's, plus the proxy variables in both spellings
// (curl reads lower-case http_proxy only, many tools read upper-case), and the variables that
// point TLS clients at the run's trust bundle. Pure.

export interface ProxyEnvironmentOptions {
  /** The proxy's URL as seen from inside the sandbox, e.g. http://198.19.0.2:3128 */
  proxyUrl: string;
  /** Hosts that must not go through the proxy (loopback inside the sandbox). */
  noProxy?: string[];
  home?: string;
  user?: { name: string };
  /** The run's trust bundle (its CA and the system's roots), as CMD sees it. */
  trustBundle?: string;
}

/**
 * Where OpenSSL and the common TLS clients take their trusted CAs from, besides the system's
 * store: OpenSSL (and so Python's ssl, Ruby, PHP), requests, curl, Node (added to its roots),
 * git, pip, Deno and the AWS SDKs and CLI.
 */
export const TRUST_BUNDLE_VARIABLES = ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'NODE_EXTRA_CA_CERTS', 'GIT_SSL_CAINFO', 'PIP_CERT', 'DENO_CERT', 'AWS_CA_BUNDLE'];

export const DEFAULT_NO_PROXY = ['localhost', '127.0.0.1', '::1'];

const PROXY_VARIABLES = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY'];

export function sandboxEnvironment(base: NodeJS.ProcessEnv, opts: ProxyEnvironmentOptions): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(base)) {
    // Drop any proxy setting of the caller: the sandbox has exactly one way out.
    if (value === undefined || PROXY_VARIABLES.includes(key.toUpperCase())) continue;
    env[key] = value;
  }
  const noProxy = (opts.noProxy ?? DEFAULT_NO_PROXY).join(',');
  for (const [key, value] of [
    ['HTTP_PROXY', opts.proxyUrl],
    ['HTTPS_PROXY', opts.proxyUrl],
    // The same port answers SOCKS5 (socks5h: the proxy resolves names) for tools that are not HTTP.
    ['ALL_PROXY', opts.proxyUrl.replace(/^http:/, 'socks5h:')],
    ['NO_PROXY', noProxy],
  ] as const) {
    env[key] = value;
    env[key.toLowerCase()] = value;
  }
  if (opts.trustBundle !== undefined) for (const key of TRUST_BUNDLE_VARIABLES) env[key] = opts.trustBundle;
  if (opts.home !== undefined) env.HOME = opts.home;
  if (opts.user !== undefined) {
    env.USER = opts.user.name;
    env.LOGNAME = opts.user.name;
  }
  env.PORTCULLIS_SANDBOX = '1';
  return env;
}

/** `http://host:port/` with brackets around an IPv6 literal. */
export function proxyUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

// --- Credentials: CMD holds placeholders, never values ---------------------------------------

export interface CredentialVariable {
  /** The variable (`env:VAR`'s VAR; the credential's name for a file source). */
  variable: string;
  placeholder: string;
}

/**
 * Puts each credential's placeholder in its variable (replacing the real value portcullis itself
 * was given), and drops any other variable whose value holds a credential's value: the sandbox
 * gets no copy of a secret under another name either. `holdsValue` tests a value without the
 * caller handing the secrets over.
 */
export function withCredentialPlaceholders(env: Record<string, string>, variables: readonly CredentialVariable[], holdsValue: (text: string) => boolean): Record<string, string> {
  if (variables.length === 0) return env;
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (!holdsValue(value)) out[key] = value;
  for (const { variable, placeholder } of variables) out[variable] = placeholder;
  return out;
}
