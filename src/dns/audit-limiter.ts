// The DNS proxy's audit: a flood of refused queries must not become a flood of audit lines. At
// most `perSecond` events a second, and one line saying how many were left out. Auditing never
// takes the resolver down (a failing sink is ignored here; the sink reports its own failures).
import type { AuditEvent } from '../audit/events.js';
import type { AuditSink } from '../audit/sink.js';

export class DnsAuditLimiter {
  private window = 0;
  private count = 0;
  private suppressed = 0;

  constructor(
    private readonly audit: AuditSink | undefined,
    private readonly perSecond: number,
  ) {}

  emit(event: AuditEvent): void {
    if (this.audit === undefined) return;
    try {
      const second = Math.floor(Date.now() / 1000);
      if (second !== this.window) {
        this.flush();
        this.window = second;
        this.count = 0;
      }
      if (this.count >= this.perSecond) {
        this.suppressed++;
        return;
      }
      this.count++;
      this.audit.emit(event);
    } catch {
      // auditing must never take the resolver down
    }
  }

  /** Writes the count of events left out since the last flush, if any. */
  flush(): void {
    if (this.suppressed === 0 || this.audit === undefined) return;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    try {
      this.audit.emit({ kind: 'dns', host: null, port: null, reason: `${suppressed} dns audit events left out (more than ${this.perSecond} a second)`, suppressed });
    } catch {
      // as above
    }
  }
}
