// Pure parts of `portcullis run`: summary, live lines, environment, launch argv, capability
// parsing, exit codes, resolver and passwd parsing.
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { effectiveCapabilities, fenceCapability } from '../src/sandbox/capabilities.js';
import { proxyUrl, sandboxEnvironment } from '../src/sandbox/environment.js';
import { exitCodeOf } from '../src/sandbox/exit-code.js';
import { initScript, shellQuote } from '../src/sandbox/init-script.js';
import { launchArgv } from '../src/sandbox/launch.js';
import { SANDBOX_HOME, sandboxMounts } from '../src/sandbox/mounts.js';
import { resolvConf } from '../src/sandbox/network.js';
import { eventBytes, formatBytes, liveLine, renderSummary } from '../src/sandbox/summary.js';
import { firstNameserver, parseHostPort } from '../src/sandbox/upstream-resolver.js';
import { cpuTicksOf, parentPidOf } from '../src/sandbox/usage.js';
import { findInPasswd, noGroupGid } from '../src/sandbox/user.js';

const deny = (over: Partial<AuditEvent>): AuditEvent => ({ kind: 'connect', allow: false, decision: 'deny', policy: null, reason: 'no', ...over });
const allow = (over: Partial<AuditEvent>): AuditEvent => ({ kind: 'connect', allow: true, decision: 'allow', policy: 'p', reason: 'ok', ...over });

describe('summary', () => {
  const events: AuditEvent[] = [
    allow({ binary: '/usr/bin/curl', host: 'api.llm.example', port: 443, policy: 'llm-api' }),
    allow({ binary: '/usr/bin/curl', host: 'api.llm.example', port: 443, policy: 'llm-api' }),
    { kind: 'tunnel', binary: '/usr/bin/curl', host: 'api.llm.example', port: 443, bytes_sent: 1500, bytes_received: 2_500_000 },
    deny({ binary: '/usr/bin/curl', host: 'paste.bin.example', port: 443, reason: 'endpoint paste.bin.example:443 is not allowed by any policy' }),
    deny({ binary: '/usr/bin/python3.11', host: 'git.code.example', port: 443, reason: 'binary /usr/bin/python3.11 is not allowed by source-code' }),
    deny({ kind: 'http', binary: '/usr/bin/curl', host: 'tickets.corp.example', port: 80, method: 'POST', path: '/v1/admin/reset', reason: 'blocked by a deny rule' }),
    { kind: 'dns', host: 'mzxw6.exfil.example', allow: false, decision: 'deny', rcode: 'REFUSED', reason: 'not named by any policy endpoint' },
    { kind: 'dns', host: 'api.llm.example', allow: true, decision: 'allow' },
    { kind: 'flow', counter: 'reject_all', packets: 3, bytes: 180, allow: false, decision: 'deny', policy: null },
    { kind: 'flow', counter: 'allow_proxy', packets: 40, bytes: 9000, allow: true, decision: 'allow', policy: null },
    { kind: 'audit' as AuditEvent['kind'], host: 'x' },
  ];
  const text = renderSummary({ events, usage: { cpuPercent: 12.4, memoryBytes: 41_500_000, samples: 7 }, exitCode: 0, durationMs: 1234, fenced: true });

  it('groups connections per program, with hosts, counts and reasons', () => {
    const curl = text.indexOf('/usr/bin/curl');
    const python = text.indexOf('/usr/bin/python3.11');
    expect(curl).toBeGreaterThan(0);
    expect(python).toBeGreaterThan(curl);
    expect(text).toMatch(/✔ allowed\s+2\s+api\.llm\.example:443 ×2/);
    expect(text).toMatch(/✘ denied\s+2\s+paste\.bin\.example:443\s+— endpoint paste\.bin\.example:443 is not allowed by any policy/);
    expect(text).toContain('tickets.corp.example:80 POST /v1/admin/reset  — blocked by a deny rule');
    expect(text).toMatch(/✘ denied\s+1\s+git\.code\.example:443\s+— binary \/usr\/bin\/python3\.11/);
  });

  it('lists refused DNS names, fence rejections, bytes and the resource peak', () => {
    expect(text).toMatch(/DNS refused\s+1\s+mzxw6\.exfil\.example/);
    expect(text).toContain('3 packets rejected');
    expect(text).toContain('1.50 kB sent, 2.50 MB received');
    expect(text).toContain('CPU 12%, memory 41.5 MB (7 samples)');
    expect(text).toContain('exit code 0, 1.2 s');
    expect(text).not.toContain('no network fence');
  });

  it('says when there was no fence and when nothing went through the proxy', () => {
    const weak = renderSummary({ events: [], fenced: false });
    expect(weak).toContain('no network fence');
    expect(weak).toContain('no connections through the proxy');
  });

  it('reads bytes from the pairs proxies report', () => {
    expect(eventBytes({ kind: 'connect', bytes_up: 5, bytes_down: 7 })).toEqual({ sent: 5, received: 7 });
    expect(eventBytes({ kind: 'connect', bytes: { sent: 1, received: 2 } })).toEqual({ sent: 1, received: 2 });
    expect(eventBytes({ kind: 'connect', bytes_sent: -4, bytes_received: 'x' })).toEqual({ sent: 0, received: 0 });
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(100_000_000)).toBe('100 MB');
  });
});

describe('live lines', () => {
  it('shows decisions with program, target, reason', () => {
    expect(liveLine(allow({ binary: '/usr/bin/curl', host: 'api.llm.example', port: 443, policy: 'llm-api' }))).toBe(
      'portcullis: ✔ allowed /usr/bin/curl → api.llm.example:443 [policy llm-api]',
    );
    expect(liveLine(deny({ kind: 'sni', binary: null, host: '2001:db8::1', port: 443, reason: 'r' }))).toBe(
      'portcullis: ✘ denied  <unresolved> → [2001:db8::1]:443 (direct TLS, by SNI) — r',
    );
    expect(liveLine({ kind: 'dns', host: 'a.exfil.example', allow: false, decision: 'deny', rcode: 'REFUSED' })).toContain('a.exfil.example → REFUSED');
    expect(liveLine({ kind: 'dns', host: 'ok.example', allow: true, decision: 'allow' })).toBeNull();
    expect(liveLine({ kind: 'flow', packets: 1 })).toBeNull();
  });
});

describe('environment', () => {
  it('sets every proxy variable in both cases and drops the caller\'s', () => {
    const env = sandboxEnvironment({ PATH: '/bin', https_proxy: 'http://evil:1', Http_Proxy: 'x', KEEP: 'y' }, { proxyUrl: 'http://198.19.0.0:3128', home: '/tmp/h', user: { name: 'u' } });
    for (const key of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) expect(env[key]).toBe('http://198.19.0.0:3128');
    for (const key of ['ALL_PROXY', 'all_proxy']) expect(env[key]).toBe('socks5h://198.19.0.0:3128');
    expect(env.NO_PROXY).toBe('localhost,127.0.0.1,::1');
    expect(env.no_proxy).toBe(env.NO_PROXY);
    expect(env.Http_Proxy).toBeUndefined();
    expect(env.KEEP).toBe('y');
    expect(env.HOME).toBe('/tmp/h');
    expect(env.USER).toBe('u');
    expect(proxyUrl('fd70::1', 3128)).toBe('http://[fd70::1]:3128');
  });
});

describe('launch argv', () => {
  const user = { name: 'u', uid: 995, gid: 994 };
  const mounts = sandboxMounts({ resolvConf: '/etc/netns/pcrun-1-0/resolv.conf', user });

  it('enters the network namespace, new PID and mount namespaces under an init, drops to the user with no capabilities, holds before exec', () => {
    const argv = launchArgv({ isolation: { netns: 'pcrun-1-0', user, mounts }, command: ['curl', '-s', 'x y'] });
    expect(argv.slice(0, 4)).toEqual(['ip', 'netns', 'exec', 'pcrun-1-0']);
    const unshare = argv.indexOf('unshare');
    const init = argv.indexOf('portcullis-init');
    const setpriv = argv.indexOf('setpriv');
    expect(unshare).toBe(4);
    for (const flag of ['--pid', '--mount', '--ipc', '--mount-proc', '--fork', '--kill-child']) expect(argv.slice(unshare, init)).toContain(flag);
    expect(argv.slice(unshare, init)).toEqual(expect.arrayContaining(['--propagation', 'private']));
    expect(argv[init - 1]).toBe(initScript(mounts));
    expect(setpriv).toBe(init + 1); // the init runs as root; CMD does not
    expect(argv).toContain('--reuid=995');
    expect(argv).toContain('--regid=994');
    for (const flag of ['--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs']) expect(argv.slice(setpriv)).toContain(flag);
    expect(argv.slice(-3)).toEqual(['curl', '-s', 'x y']);
    const plain = launchArgv({ command: ['true'] });
    expect(plain[0]).toBe('/bin/sh');
    expect(plain).not.toContain('setpriv');
    expect(plain).not.toContain('unshare');
  });

  it('mounts private /run, /var/run, /tmp and /dev/shm, makes HOME there, binds the resolv.conf, and exits with CMD\'s status', () => {
    expect(mounts.tmpfs.map((m) => m.target)).toEqual(['/run', '/var/run', '/tmp', '/dev/shm']);
    expect(mounts.binds).toEqual([{ source: '/etc/netns/pcrun-1-0/resolv.conf', target: '/etc/resolv.conf' }]);
    expect(mounts.home).toEqual({ path: SANDBOX_HOME, uid: 995, gid: 994 });
    expect(SANDBOX_HOME.startsWith('/tmp/')).toBe(true);
    const script = initScript(mounts);
    expect(script).toContain("\ntmpfs '/run' 755\ntmpfs '/var/run' 755\ntmpfs '/tmp' 1777\ntmpfs '/dev/shm' 1777\n");
    expect(script).toContain(`\nhome '${SANDBOX_HOME}' 995 994\n`);
    expect(script).toContain("bind '/etc/netns/pcrun-1-0/resolv.conf' '/etc/resolv.conf'");
    // mounts before CMD; CMD in the foreground (signals at their defaults); the init passes its status on
    expect(script.indexOf('bind \'')).toBeLessThan(script.indexOf('"$@"'));
    expect(script.trimEnd().split('\n').slice(-3)).toEqual(['set +e', '"$@"', 'exit $?']);
    expect(shellQuote("it's")).toBe("'it'\\''s'");
  });
});

describe('capabilities, exit codes, parsing', () => {
  it('needs NET_ADMIN, SYS_ADMIN, SETUID and SETGID', () => {
    expect(effectiveCapabilities('Name:\tx\nCapEff:\t000001ffffffffff\n')).toBe(0x1ffffffffffn);
    expect(fenceCapability('CapEff:\t000001ffffffffff\n').ok).toBe(true);
    const none = fenceCapability('CapEff:\t0000000000000000\n');
    expect(none.ok).toBe(false);
    expect(none.why).toContain('CAP_NET_ADMIN');
    expect(fenceCapability('CapEff:\t0000000000001000\n').why).not.toContain('CAP_NET_ADMIN');
    expect(fenceCapability('nothing').ok).toBe(false);
  });

  it('passes exit codes through and maps signals to 128+n', () => {
    expect(exitCodeOf(0, null)).toBe(0);
    expect(exitCodeOf(42, null)).toBe(42);
    expect(exitCodeOf(null, 'SIGTERM')).toBe(143);
    expect(exitCodeOf(null, 'SIGINT')).toBe(130);
    expect(exitCodeOf(null, 'SIGKILL')).toBe(137);
  });

  it('parses resolvers, resolv.conf, passwd and /proc stat', () => {
    expect(parseHostPort('127.0.0.1:5353')).toEqual({ host: '127.0.0.1', port: 5353 });
    expect(parseHostPort('[::1]:53')).toEqual({ host: '::1', port: 53 });
    expect(parseHostPort('10.0.0.1')).toEqual({ host: '10.0.0.1', port: 53 });
    expect(() => parseHostPort('dns.example:53')).toThrow(/ADDR:PORT/);
    expect(() => parseHostPort('1.2.3.4:70000')).toThrow(/port/);
    expect(firstNameserver('# c\nsearch x\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n')).toEqual({ host: '192.0.2.53', port: 53 });
    expect(firstNameserver('search x\n')).toBeNull();
    expect(resolvConf('198.19.0.0')).toMatch(/^nameserver 198\.19\.0\.0$/m);
    const passwd = 'root:x:0:0::/root:/bin/bash\nportcullis-sandbox:x:995:994::/nonexistent:/usr/sbin/nologin\n';
    expect(findInPasswd(passwd, 'portcullis-sandbox')).toEqual({ name: 'portcullis-sandbox', uid: 995, gid: 994 });
    expect(findInPasswd(passwd, '995')?.name).toBe('portcullis-sandbox');
    expect(findInPasswd(passwd, 'nobody')).toBeNull();
    expect(noGroupGid('root:x:0:\nsudo:x:27:u\nnogroup:x:65534:\n')).toBe(65534);
    expect(noGroupGid('root:x:0:\nnobody:x:65534:\n')).toBe(65534);
    expect(noGroupGid('root:x:0:\nnobody:x:99:\nnogroup:x:65534:\n')).toBe(65534);
    expect(noGroupGid('root:x:0:\n995:x:995:\n')).toBeNull();
    expect(parentPidOf('123 (a) b) c) S 77 123 123 0')).toBe(77);
    expect(parentPidOf('garbage')).toBeNull();
    expect(cpuTicksOf('9 (x) y) S 1 0 0 0 0 0 0 0 0 0 5 6 7 8 20 0')).toBe(26);
    expect(cpuTicksOf('garbage')).toBe(0);
  });
});
