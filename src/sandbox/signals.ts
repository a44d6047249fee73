// SIGINT, SIGTERM, SIGHUP and SIGQUIT during a run: during set-up they end it at the next step;
// once CMD exists they go to CMD, which has KILL_GRACE_MS to end before the whole run is killed.
import type { HeldCommand } from './launch.js';
import type { SandboxNetwork } from './network.js';

const KILL_GRACE_MS = 5000;
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129, SIGQUIT: 131 };

export class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
  }

  /** The shell's exit code for the signal. */
  get exitCode(): number {
    return SIGNAL_EXIT[this.signal] ?? 1;
  }
}

export class SignalRelay {
  private interrupted: NodeJS.Signals | undefined;
  private held: HeldCommand | undefined;
  private network: SandboxNetwork | undefined;
  private killTimer: NodeJS.Timeout | undefined;

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.interrupted ??= signal;
    const held = this.held;
    if (held === undefined) return; // during set-up: check() ends it
    // A terminal's Ctrl-C already reached CMD (same process group): do not deliver it twice.
    if (!(signal === 'SIGINT' && process.stdin.isTTY)) held.signal(signal);
    this.killTimer ??= setTimeout(() => {
      held.kill();
      this.network?.closeSync();
    }, KILL_GRACE_MS);
  };

  constructor() {
    for (const signal of FORWARDED_SIGNALS) process.on(signal, this.onSignal);
  }

  /** From now on signals go to CMD; the network is removed if CMD outlives the grace. */
  relayTo(held: HeldCommand, network?: SandboxNetwork): void {
    this.held = held;
    this.network = network;
  }

  /** Throws Interrupted when a signal came during set-up. */
  check(): void {
    if (this.interrupted) throw new Interrupted(this.interrupted);
  }

  /** CMD has ended: no kill after the grace. */
  settle(): void {
    if (this.killTimer) clearTimeout(this.killTimer);
  }

  dispose(): void {
    this.settle();
    for (const signal of FORWARDED_SIGNALS) process.off(signal, this.onSignal);
  }
}
