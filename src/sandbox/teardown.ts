// What a run undoes at its end: steps registered as they are set up, run last-first, each once,
// asynchronously or (in a process 'exit' handler) synchronously.
import type { HeldCommand } from './launch.js';

/** How long tear-down waits for the killed run's processes to be gone. */
const KILL_WAIT_MS = 3000;

export class Teardown {
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

/** Kills every process of the run, and waits (bounded) until they are gone. */
export function killRun(held: HeldCommand): () => Promise<void> {
  return async () => {
    held.kill();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, KILL_WAIT_MS)));
    await Promise.race([held.exited, bound]);
    clearTimeout(timer);
  };
}
