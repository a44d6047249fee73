// `portcullis run`: CMD in its own network namespace, behind the proxy, the DNS proxy and the
// nft fence, as an unprivileged user; then a summary. Everything it creates is removed on
// exit, on SIGINT/SIGTERM/SIGHUP and when CMD crashes; leftovers of a killed run are removed
// by the next one.
import type { Writable } from 'node:stream';
import type { AuditEvent } from '../audit/events.js';
import { openAuditSink, type StreamAuditSink } from '../audit/sink.js';
import type { AddressNamer } from '../dns/flows.js';
import { renderRuleset } from '../nft/render.js';
import { loadPolicyFile, type LoadedPolicy } from '../policy/load.js';
import { currentFenceCapability } from './capabilities.js';
import { proxyUrl, sandboxEnvironment } from './environment.js';
import { exitCodeOf } from './exit-code.js';
import { removeLegacyHomes } from './home.js';
import { launchHeld, type HeldCommand } from './launch.js';
import { SANDBOX_HOME, sandboxMounts } from './mounts.js';
import { createSandboxNetwork, type SandboxNetwork } from './network.js';
import { liveLine, renderSummary, verdictOf } from './summary.js';
import { startUsageSampler, type UsageSampler } from './usage.js';
import { resolveSandboxUser, SandboxUserError, type SandboxUser } from './user.js';

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
  policyFile: string;
  audit: StreamAuditSink;
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
}

export interface RunningEgress {
  /** The proxy's actual address (the plan's port may be 0 when not fenced). */
  proxy: HostPort;
  /** The name(s) the DNS proxy handed an address out for (names the flow events). */
  names?: AddressNamer;
  close(): Promise<void>;
}

export type EgressStarter = (ctx: EgressContext) => Promise<RunningEgress>;

export interface RunSandboxOptions {
  policyFile: string;
  command: string[];
  user?: string;
  auditFile?: string;
  resolver?: HostPort;
  reportOnly?: boolean;
  /** Print every decision as it happens (default: denials only). */
  live?: boolean;
  /** No live lines and no summary. */
  quiet?: boolean;
  /** Force the weaker proxy-environment-only mode even with privileges (tests, benchmarks). */
  noFence?: boolean;
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
const KILL_GRACE_MS = 5000;
/** How long tear-down waits for the killed run's processes to be gone. */
const KILL_WAIT_MS = 3000;
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129, SIGQUIT: 131 };

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

/** Cleanup steps, undone last-first; each runs once, async or (process 'exit') sync. */
class Teardown {
  private steps: Array<{ name: string; run: () => Promise<void>; runSync?: () => void; done: boolean }> = [];

  add(name: string, run: () => Promise<void>, runSync?: () => void): void {
    this.steps.push({ name, run, ...(runSync ? { runSync } : {}), done: false });
  }

  async runAll(report: (message: string) => void): Promise<void> {
    for (const step of [...this.steps].reverse()) {
      if (step.done) continue;
      step.done = true;
      try {
        await step.run();
      } catch (err) {
        report(`portcullis: clean-up of ${step.name} failed: ${(err as Error).message}`);
      }
    }
  }

  runAllSync(): void {
    for (const step of [...this.steps].reverse()) {
      if (step.done || !step.runSync) continue;
      step.done = true;
      try {
        step.runSync();
      } catch {
        // best effort while the process exits
      }
    }
  }
}

export async function runSandbox(opts: RunSandboxOptions): Promise<number> {
  const out = opts.out ?? process.stderr;
  const say = (line: string): void => void out.write(`${line}\n`);
  if (opts.command.length === 0) throw new RunUsageError('no command given: portcullis run --policy F -- CMD [ARGS…]');

  const started = Date.now();
  const loaded = await loadPolicyFile(opts.policyFile);
  const capability = opts.noFence ? { ok: false, why: 'fence turned off' } : currentFenceCapability();
  const fenced = capability.ok;
  if (!fenced) {
    say(`portcullis: ${capability.why}: no network namespace and no nft fence. CMD runs with the proxy environment only — WEAKER: a program that ignores HTTP_PROXY is not stopped.`);
  }

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

  const teardown = new Teardown();
  const onExit = (): void => teardown.runAllSync();
  process.on('exit', onExit);

  let held: HeldCommand | undefined;
  let interrupted: NodeJS.Signals | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  let network: SandboxNetwork | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted ??= signal;
    if (held === undefined) return; // during set-up: the steps below see `interrupted`
    // A terminal's Ctrl-C already reached CMD (same process group): do not deliver it twice.
    if (!(signal === 'SIGINT' && process.stdin.isTTY)) held.signal(signal);
    killTimer ??= setTimeout(() => {
      held?.kill();
      network?.closeSync();
    }, KILL_GRACE_MS);
  };
  for (const signal of FORWARDED_SIGNALS) process.on(signal, onSignal);
  const checkInterrupted = (): void => {
    if (interrupted) throw new Interrupted(interrupted);
  };

  let exitCode = 1;
  let sampler: UsageSampler | undefined;
  let usage;
  let egress: RunningEgress | undefined;
  let tools: FenceTools | undefined;
  try {
    let plan: EgressPlan;
    let user: SandboxUser | undefined;
    if (fenced) {
      user = await resolveSandboxUser(opts.user);
      const [built, loadedTools] = await Promise.allSettled([
        createSandboxNetwork(),
        loadOnNextTurn(async () => {
          const [fenceTools] = await Promise.all([loadFenceTools(), opts.loadEgress?.()]);
          return fenceTools;
        }),
      ]);
      if (built.status === 'rejected') throw built.reason;
      network = built.value;
      const net = network;
      teardown.add('the sandbox network', () => net.close(), () => net.closeSync());
      if (loadedTools.status === 'rejected') throw loadedTools.reason;
      tools = loadedTools.value;
      const host = net.link.hostV4;
      plan = { proxy: { host, port: PROXY_PORT }, sni: { host, port: SNI_PORT }, dns: { host, port: DNS_PORT } };
      await removeLegacyHomes();
    } else {
      if (opts.user !== undefined) say('portcullis: --user needs root; CMD runs as you');
      plan = { proxy: { host: '127.0.0.1', port: 0 } };
    }
    checkInterrupted();

    const base = {
      loaded,
      policyFile: opts.policyFile,
      audit,
      ...(opts.resolver ? { resolver: opts.resolver } : {}),
      reportOnly: opts.reportOnly === true,
    };
    if (fenced && network && user && tools) {
      // CMD first, held before exec: its pid anchors identity before any connection exists.
      held = launchHeld({
        isolation: { netns: network.netns, user, mounts: sandboxMounts({ resolvConf: network.resolvConf, user }) },
        command: opts.command,
        env: sandboxEnvironment(process.env, { proxyUrl: proxyUrl(plan.proxy.host, plan.proxy.port), home: SANDBOX_HOME, user }),
      });
      teardown.add('CMD', killRun(held), () => held?.kill());
      // The proxies and the fence are independent: set them up at the same time. CMD is still
      // held, so nothing can slip out before both are in place. The proxy anchors identities on
      // CMD's host pid, known once the sandbox's init has started it.
      const script = renderRuleset(loaded.policies, { proxy: plan.proxy, ...(plan.dns ? { dns: plan.dns } : {}), ...(plan.sni ? { sni: plan.sni } : {}) });
      const netns = network.netns;
      const [started, fence] = await Promise.allSettled([
        opts.startEgress({ ...base, plan, netns, anchorPid: held.ready }),
        tools.applyRuleset(script, { netns }),
      ]);
      if (started.status === 'fulfilled') {
        const running = started.value;
        egress = running;
        teardown.add('the proxy', () => running.close());
      }
      if (started.status === 'rejected') throw started.reason;
      if (fence.status === 'rejected') throw fence.reason;
      checkInterrupted();
    } else {
      const running = await opts.startEgress({ ...base, plan });
      egress = running;
      teardown.add('the proxy', () => running.close());
      checkInterrupted();
      held = launchHeld({
        command: opts.command,
        env: sandboxEnvironment(process.env, { proxyUrl: proxyUrl(running.proxy.host, running.proxy.port) }),
      });
      teardown.add('CMD', killRun(held), () => held?.kill());
    }

    sampler = startUsageSampler(held.pid);
    held.release();
    const result = await held.exited;
    exitCode = exitCodeOf(result.code, result.signal);
    if (killTimer) clearTimeout(killTimer);
  } catch (err) {
    if (err instanceof Interrupted) {
      exitCode = SIGNAL_EXIT[err.signal] ?? 1;
      held?.abort();
    } else {
      say(`portcullis run: ${(err as Error).message}`);
      exitCode = err instanceof SandboxUserError ? 2 : 70;
    }
  } finally {
    usage = await sampler?.stop();
    if (network && tools) {
      // The counters are read inside the namespace and need no veth pair, whose deletion is the
      // slow part of the tear-down: both at once.
      const names = egress?.names ?? (() => undefined);
      const [flows] = await Promise.allSettled([
        tools.readFlowEvents({ netns: network.netns, policies: loaded.policies, names }),
        network.deleteLink(),
      ]);
      // Without flows (set-up failed before nft) there is nothing to report.
      if (flows.status === 'fulfilled') for (const event of flows.value) audit.emit(event);
    }
    await teardown.runAll(say);
    for (const signal of FORWARDED_SIGNALS) process.off(signal, onSignal);
    process.off('exit', onExit);
    await audit.close();
  }
  if (!opts.quiet) {
    out.write(renderSummary({ events, ...(usage ? { usage } : {}), exitCode, durationMs: Date.now() - started, fenced }));
  }
  return exitCode;
}

/** Kills every process of the run, and waits (bounded) until they are gone. */
function killRun(held: HeldCommand): () => Promise<void> {
  return async () => {
    held.kill();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, KILL_WAIT_MS)));
    await Promise.race([held.exited, bound]);
    clearTimeout(timer);
  };
}

class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
  }
}
