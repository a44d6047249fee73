// The bookkeeping of a time when audit events could not be written: since when, why, how many
// were lost; it ends in an `audit_gap` event. Pure.
import type { AuditEvent } from './events.js';

export class AuditOutage {
  private lostEvents = 0;

  constructor(
    readonly since: Date,
    /** The error code of the failed write or reopen (ENOSPC, EACCES, ELOOP, …). */
    public cause: string,
    public detail: string,
  ) {}

  lose(): void {
    this.lostEvents++;
  }

  get lost(): number {
    return this.lostEvents;
  }

  /** The event that says so once writing works again. */
  gapEvent(until: Date): AuditEvent {
    return {
      time: until.toISOString(),
      kind: 'audit_gap',
      lost: this.lostEvents,
      since: this.since.toISOString(),
      until: until.toISOString(),
      duration_ms: until.getTime() - this.since.getTime(),
      cause: this.cause,
      detail: this.detail,
    };
  }
}
