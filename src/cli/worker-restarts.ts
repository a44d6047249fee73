// Whether a proxy worker that died is started again: yes, unless workers keep dying (`limit`
// deaths within `windowMs`), when restarting would only hide a fault that kills every worker.
// Pure: the caller gives the time.
export const RESTART_LIMIT = 5;
export const RESTART_WINDOW_MS = 10_000;

export class RestartBudget {
  private deaths: number[] = [];

  constructor(
    readonly limit = RESTART_LIMIT,
    readonly windowMs = RESTART_WINDOW_MS,
  ) {}

  /** Records a death at `now` (ms); false when it is the `limit`-th within the window. */
  allowsRestart(now: number): boolean {
    this.deaths = this.deaths.filter((t) => now - t < this.windowMs);
    this.deaths.push(now);
    return this.deaths.length < this.limit;
  }
}
