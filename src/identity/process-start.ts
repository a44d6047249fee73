// When a process started, on the clock of performance.now(): /proc/<pid>/stat gives its start
// in clock ticks since boot, and /proc/uptime ties boot to now (both count from boot, so a
// suspend after this calibration can only make starts look later: the safe direction for
// "a look taken after the process started").
import { readProcText } from './proc-read.js';
import { readProcStat } from './process-table.js';

/** USER_HZ: the unit of /proc/<pid>/stat's starttime on Linux. */
const TICKS_PER_SECOND = 100;
/**
 * How far a computed start may lie before the real one: a tick of truncation in the start and
 * 10 ms of rounding in /proc/uptime, with room to spare.
 */
export const START_UNCERTAINTY_MS = 30;

export class ProcessStartClock {
  /** Boot on performance.now()'s clock; undefined when /proc/uptime cannot be read (then no start is known). */
  private readonly bootAt: number | undefined;

  constructor(private readonly procDir = '/proc') {
    try {
      const uptimeSeconds = Number(readProcText(`${procDir}/uptime`, 'latin1').split(' ')[0]);
      this.bootAt = Number.isFinite(uptimeSeconds) ? performance.now() - uptimeSeconds * 1000 : undefined;
    } catch {
      this.bootAt = undefined;
    }
  }

  /** A moment no earlier than a start of `startTime` clock ticks after boot; undefined when boot is unknown. */
  notBeforeStart(startTime: number): number | undefined {
    return this.bootAt === undefined ? undefined : this.bootAt + (startTime * 1000) / TICKS_PER_SECOND + START_UNCERTAINTY_MS;
  }

  /** A moment no earlier than the process's start, read now (so a reused pid cannot mislead); undefined when it is gone or unknown. */
  notBeforeStartOf(pid: number): number | undefined {
    if (this.bootAt === undefined) return undefined;
    try {
      return this.notBeforeStart(readProcStat(pid, this.procDir).startTime);
    } catch {
      return undefined;
    }
  }
}
