// `portcullis run`: CMD in its own network, PID and mount namespaces, behind the proxy, the DNS
// proxy and the nft fence, as an unprivileged user; then a summary. Everything it creates is removed on
// exit, on SIGINT/SIGTERM/SIGHUP and when CMD crashes; leftovers of a killed run are removed
// by the next one.
import type { Writable } from 'node:stream';
import type { AuditEvent } from '../audit/events.js';
import { openAuditSink, type AuditFailureMode, type StreamAuditSink } from '../audit/sink.js';
import type { AddressNamer } from '../dns/flows.js';
import { renderRuleset } from '../nft/render.js';
import { loadPolicyFile, type LoadedPolicy } from '../policy/load.js';
import type { PolicyData } from '../policy/types.js';
import type { InspectionTls } from '../tls/inspection.js';
import { currentFenceCapability } from './capabilities.js';
import { CredentialStore } from '../credentials/store.js';
import { proxyUrl, sandboxEnvironment, withCredentialPlaceholders } from './environment.js';
import { exitCodeOf } from './exit-code.js';
import { removeLegacyHomes } from './home.js';
import { launchHeld, type HeldCommand } from './launch.js';
import { SANDBOX_HOME, sandboxMounts } from './mounts.js';
import { createSandboxNetwork, type SandboxNetwork } from './network.js';
import { Interrupted, SignalRelay } from './signals.js';
import { liveLine, renderSummary, verdictOf } from './summary.js';
import { killRun, Teardown } from './teardown.js';
import { prepareRunTrust, trustPlace, type RunTrust, type TrustOptions } from './trust.js';
import { startUsageSampler, type UsageSampler } from './usage.js';
import { resolveSandboxUser, SandboxUserError } from './user.js';

export interface HostPort {
  host: string;
  port: number;
}

/** Where the sandbox's egress services listen, fixed before they start (CMD's env names them). */
export interface EgressPlan {
  proxy: HostPort;
  /** Transparent TLS listener for direct TCP/443 (fenced runs only). */
  sni?: HostPort;
  /** DNS proxy (fenced runs only): the sandbox's resolv.conf names it. */
  dns?: HostPort;
}

export interface EgressContext {
  plan: EgressPlan;
  loaded: LoadedPolicy;
  /** The compiled module to decide with (a bundle's); without it the built-in Rego is compiled. */
  wasm?: Buffer;
  /** Credential values and the placeholders CMD was given (one store, made before CMD starts). */
  credentials: CredentialStore;
  policyFile: string;
  audit: StreamAuditSink;
  auditFailure?: AuditFailureMode;
  /** The upstream DNS server for the proxy's lookups and the DNS proxy. */
  resolver?: HostPort;
  reportOnly: boolean;
  /** Namespace of the sandbox (for the DNS proxy's nft sets); absent when not fenced. */
  netns?: string;
  /**
   * CMD's host pid, once the sandbox's init has started it: identities are resolved through it
   * (its namespace's socket table, the tree below it).
   */
  anchorPid?: Promise<number>;
  /** The run's CA (its leaves) and the upstream trust, for the proxy's TLS inspection. */
  inspection?: InspectionTls;
}

export interface RunningEgress {
  /** The proxy's actual address (the plan's port may be 0 when not fenced). */
  proxy: HostPort;
  /** The name(s) the DNS proxy handed an address out for (names the flow events). */
  names?: AddressNamer;
  close(): Promise<void>;
}

export type EgressStarter = (ctx: EgressContext) => Promise<RunningEgress>;

/** A policy that arrived compiled (a built bundle): its module and data. */
export interface CompiledPolicy {
  wasm: Buffer;
  data: PolicyData;
}

export interface RunSandboxOptions {
  /** The policy file, or with `compiled`, the bundle file it came from. */
  policyFile: string;
  compiled?: CompiledPolicy;
  command: string[];
  user?: string;
  auditFile?: string;
  auditFailure?: AuditFailureMode;
  resolver?: HostPort;
  reportOnly?: boolean;
  /** Print every decision as it happens (default: denials only). */
  live?: boolean;
  /** No live lines and no summary. */
  quiet?: boolean;
  /** Force the weaker proxy-environment-only mode even with privileges (tests, benchmarks). */
  noFence?: boolean;
  /** `--ca-cert`/`--ca-key`: inspect with this CA instead of one made for the run. */
  ca?: { certFile: string; keyFile: string };
  /** `--upstream-ca` files: trusted for upstreams, by the proxy and by CMD. */
  upstreamCaFiles?: string[];
  startEgress: EgressStarter;
  /**
   * Loads the modules startEgress needs, when it loads them itself: called while the sandbox
   * network is being built, so that the loading overlaps the `ip` commands.
   */
  loadEgress?: () => Promise<unknown>;
  /** Where messages, live lines and the summary go (default: stderr). */
  out?: Writable;
}

export class RunUsageError extends Error {
  override name = 'RunUsageError';
}

const PROXY_PORT = 3128;
const SNI_PORT = 3129;
const DNS_PORT = 53;

/** What a fenced run needs once its network exists; both bring execa, slow to load. */
interface FenceTools {
  applyRuleset: typeof import('../nft/apply.js').applyRuleset;
  readFlowEvents: typeof import('../dns/flow-report.js').readFlowEvents;
}

async function loadFenceTools(): Promise<FenceTools> {
  const [{ applyRuleset }, { readFlowEvents }] = await Promise.all([import('../nft/apply.js'), import('../dns/flow-report.js')]);
  return { applyRuleset, readFlowEvents };
}

/**
 * Runs `load` on the next turn of the event loop. Building the network is work for `ip`
 * processes, loading modules is work for this thread: started after the first `ip` command,
 * the loading happens while it runs instead of before it.
 */
function loadOnNextTurn<T>(load: () => Promise<T>): Promise<T> {
  return new Promise<void>((resolve) => setImmediate(resolve)).then(load);
}

/** What a run has set up so far: what its end must undo and report. */
interface RunState {
  teardown: Teardown;
  signals: SignalRelay;
  held?: HeldCommand;
  network?: SandboxNetwork;
  tools?: FenceTools;
  egress?: RunningEgress;
}

type EgressBase = Omit<EgressContext, 'plan' | 'netns' | 'anchorPid' | 'inspection'>;

function trustOptions(opts: RunSandboxOptions): TrustOptions {
  return { ...(opts.ca ? { ca: opts.ca } : {}), upstreamCaFiles: opts.upstreamCaFiles ?? [] };
}

/** The run's trust, its bundle's directory removed at the end. */
function holdTrust(state: RunState, trust: RunTrust): RunTrust {
  state.teardown.add('the trust bundle', async () => trust.close(), () => trust.close());
  return trust;
}

/** A bad --ca-cert/--ca-key/--upstream-ca (tls/ca-files.js is not loaded just to name it). */
const isCaFileError = (err: unknown): boolean => (err as Error | null)?.name === 'CaFileError';

export async function runSandbox(opts: RunSandboxOptions): Promise<number> {
  const out = opts.out ?? process.stderr;
  const say = (line: string): void => void out.write(`${line}\n`);
  if (opts.command.length === 0) throw new RunUsageError('no command given: portcullis run --policy F -- CMD [ARGS…]');

  const started = Date.now();
  const loaded: LoadedPolicy = opts.compiled
    ? // A bundle never carries credential values: none are swapped in a run from one.
      { file: opts.policyFile, policies: Object.values(opts.compiled.data.policies), data: opts.compiled.data, credentials: [] }
    : await loadPolicyFile(opts.policyFile);
  const capability = opts.noFence ? { ok: false, why: 'fence turned off' } : currentFenceCapability();
  const fenced = capability.ok;
  if (!fenced) {
    say(`portcullis: ${capability.why}: no network namespace and no nft fence. CMD runs with the proxy environment only — WEAKER: a program that ignores HTTP_PROXY is not stopped.`);
  }
  const { audit, events } = openRunAudit(opts, say);
  const state: RunState = { teardown: new Teardown(), signals: new SignalRelay() };
  const onExit = (): void => state.teardown.runAllSync();
  process.on('exit', onExit);

  let exitCode = 1;
  let sampler: UsageSampler | undefined;
  let usage;
  try {
    // The placeholders CMD is given are the ones the proxy swaps: one store for both.
    const credentials = new CredentialStore(loaded.credentials);
    const base: EgressBase = { loaded, credentials, ...(opts.compiled ? { wasm: opts.compiled.wasm } : {}), policyFile: opts.policyFile, audit, ...(opts.auditFailure ? { auditFailure: opts.auditFailure } : {}), ...(opts.resolver ? { resolver: opts.resolver } : {}), reportOnly: opts.reportOnly === true };
    const held = fenced ? await setUpFenced(opts, base, state) : await setUpUnfenced(opts, base, state, say);
    sampler = startUsageSampler(held.pid);
    held.release();
    const result = await held.exited;
    state.signals.settle();
    exitCode = exitCodeOf(result.code, result.signal);
  } catch (err) {
    if (err instanceof Interrupted) {
      exitCode = err.exitCode;
      state.held?.abort();
    } else {
      say(`portcullis run: ${(err as Error).message}`);
      exitCode = err instanceof SandboxUserError || isCaFileError(err) ? 2 : 70;
    }
  } finally {
    usage = await sampler?.stop();
    await reportFlows(state, loaded, audit);
    await state.teardown.runAll(say);
    state.signals.dispose();
    process.off('exit', onExit);
    await audit.close();
  }
  if (!opts.quiet) {
    out.write(renderSummary({ events, ...(usage ? { usage } : {}), exitCode, durationMs: Date.now() - started, fenced }));
  }
  return exitCode;
}

/** The audit sink, and the events kept for the summary; denials (or all, --live) printed live. */
function openRunAudit(opts: RunSandboxOptions, say: (line: string) => void): { audit: StreamAuditSink; events: AuditEvent[] } {
  const events: AuditEvent[] = [];
  const audit = openAuditSink(opts.auditFile);
  audit.onEvent((event) => {
    events.push(event);
    if (opts.quiet) return;
    const verdict = verdictOf(event);
    if (!opts.live && verdict !== 'deny' && verdict !== 'audit') return;
    const line = liveLine(event);
    if (line) say(line);
  });
  return { audit, events };
}

/** Network, CMD held in its namespaces, proxies and fence: CMD is ready to be released. */
async function setUpFenced(opts: RunSandboxOptions, base: EgressBase, state: RunState): Promise<HeldCommand> {
  const user = await resolveSandboxUser(opts.user);
  // The CA's keys are made while the network's `ip` commands run.
  const [built, loadedTools, trusted] = await Promise.allSettled([
    createSandboxNetwork(),
    loadOnNextTurn(async () => {
      const [fenceTools] = await Promise.all([loadFenceTools(), opts.loadEgress?.()]);
      return fenceTools;
    }),
    prepareRunTrust(trustOptions(opts), trustPlace(true, user.uid)),
  ]);
  const trust = trusted.status === 'fulfilled' ? holdTrust(state, trusted.value) : undefined;
  if (built.status === 'rejected') throw built.reason;
  const network = (state.network = built.value);
  state.teardown.add('the sandbox network', () => network.close(), () => network.closeSync());
  if (trusted.status === 'rejected' || trust === undefined) throw (trusted as PromiseRejectedResult).reason;
  if (loadedTools.status === 'rejected') throw loadedTools.reason;
  const tools = (state.tools = loadedTools.value);
  const host = network.link.hostV4;
  const [proxy, sni, dns] = [{ host, port: PROXY_PORT }, { host, port: SNI_PORT }, { host, port: DNS_PORT }];
  await removeLegacyHomes();
  state.signals.check();

  // CMD first, held before exec: its pid anchors identity before any connection exists.
  const held = (state.held = launchHeld({
    isolation: { netns: network.netns, user, mounts: sandboxMounts({ resolvConf: network.resolvConf, user, trustBundle: trust.bundleFile, hidden: base.credentials.sourceFiles() }) },
    command: opts.command,
    env: credentialEnvironment(sandboxEnvironment(process.env, { proxyUrl: proxyUrl(proxy.host, proxy.port), home: SANDBOX_HOME, user, trustBundle: trust.bundleFile }), base.credentials),
  }));
  state.signals.relayTo(held, network);
  state.teardown.add('CMD', killRun(held), () => held.kill());
  // The proxies and the fence are independent: set them up at the same time. CMD is still
  // held, so nothing can slip out before both are in place. The proxy anchors identities on
  // CMD's host pid, known once the sandbox's init has started it.
  const script = renderRuleset(base.loaded.policies, { proxy, dns, sni });
  const netns = network.netns;
  const [started, fence] = await Promise.allSettled([
    opts.startEgress({ ...base, plan: { proxy, sni, dns }, netns, anchorPid: held.ready, inspection: trust.inspection }),
    tools.applyRuleset(script, { netns }),
  ]);
  if (started.status === 'fulfilled') {
    const running = (state.egress = started.value);
    state.teardown.add('the proxy', () => running.close());
  }
  if (started.status === 'rejected') throw started.reason;
  if (fence.status === 'rejected') throw fence.reason;
  state.signals.check();
  return held;
}

/** The weaker mode: the proxy on loopback, CMD as the caller with the proxy variables only. */
async function setUpUnfenced(opts: RunSandboxOptions, base: EgressBase, state: RunState, say: (line: string) => void): Promise<HeldCommand> {
  if (opts.user !== undefined) say('portcullis: --user needs root; CMD runs as you');
  if (opts.ca !== undefined) say('portcullis: without the fence CMD runs as you and can read --ca-key');
  const trust = holdTrust(state, await prepareRunTrust(trustOptions(opts), trustPlace(false)));
  state.signals.check();
  const running = (state.egress = await opts.startEgress({ ...base, plan: { proxy: { host: '127.0.0.1', port: 0 } }, inspection: trust.inspection }));
  state.teardown.add('the proxy', () => running.close());
  state.signals.check();
  const held = (state.held = launchHeld({
    command: opts.command,
    env: credentialEnvironment(sandboxEnvironment(process.env, { proxyUrl: proxyUrl(running.proxy.host, running.proxy.port), trustBundle: trust.bundleFile }), base.credentials),
  }));
  state.signals.relayTo(held);
  state.teardown.add('CMD', killRun(held), () => held.kill());
  return held;
}

/** CMD's environment with placeholders for the credentials' values. */
function credentialEnvironment(env: Record<string, string>, credentials: CredentialStore): Record<string, string> {
  return withCredentialPlaceholders(env, credentials.placeholderVariables(), (text) => credentials.holdsValue(text));
}

/** The nft counters as flow events (fenced runs whose fence was set up). */
async function reportFlows(state: RunState, loaded: LoadedPolicy, audit: StreamAuditSink): Promise<void> {
  const { network, tools } = state;
  if (!network || !tools) return;
  // The counters are read inside the namespace and need no veth pair, whose deletion is the
  // slow part of the tear-down: both at once.
  const names = state.egress?.names ?? (() => undefined);
  const [flows] = await Promise.allSettled([tools.readFlowEvents({ netns: network.netns, policies: loaded.policies, names }), network.deleteLink()]);
  // Without flows (set-up failed before nft) there is nothing to report.
  if (flows.status === 'fulfilled') for (const event of flows.value) audit.emit(event);
}
