// The decider end of one srt-proxy link: waits for the proxy's hello, answers with the policy's
// egress lists, then answers every request with a verdict, in order. Anything the protocol does
// not have ends the link with a clear error: srt-proxy then refuses every request (fail closed).
import type { Readable, Writable } from 'node:stream';
import type { AuditSink } from '../audit/sink.js';
import type { PolicyEngine } from '../engine/engine.js';
import { egressLists } from './egress-lists.js';
import { encodeFrame, FrameError, FrameReader } from './frames.js';
import { helloMessage, parseProxyMessage } from './messages.js';
import { verdictFor } from './verdict.js';

export interface DeciderLinkOptions {
  input: Readable;
  output: Writable;
  engine: PolicyEngine;
  audit: AuditSink;
  reportOnly: boolean;
  /** Diagnostics (never the request stream): widened patterns, the reason a link ended. */
  log: (line: string) => void;
}

export type LinkEnd = { ok: true } | { ok: false; error: string };

export interface DeciderLink {
  /** Settles when the proxy ends the stream (ok) or breaks the protocol (error). */
  ended: Promise<LinkEnd>;
  stats(): { requests: number; allowed: number; denied: number };
}

export function startDeciderLink(opts: DeciderLinkOptions): DeciderLink {
  const reader = new FrameReader();
  const stats = { requests: 0, allowed: 0, denied: 0 };
  let greeted = false;
  let lastId = 0;
  let finish!: (end: LinkEnd) => void;
  const ended = new Promise<LinkEnd>((resolve) => (finish = resolve));
  let over = false;

  const end = (result: LinkEnd): void => {
    if (over) return;
    over = true;
    opts.input.off('data', onData);
    opts.output.end();
    finish(result);
  };

  const hello = (): void => {
    const lists = egressLists(opts.engine.data);
    for (const w of lists.widened) opts.log(`decider: ${w.pattern} is listed to srt-proxy as ${w.entry} (each request is still decided by the policy)`);
    for (const u of lists.uncovered) opts.log(`decider: hostless range ${u} is too wide for srt-proxy's lists; only its listed hosts are reachable through it`);
    opts.output.write(encodeFrame(helloMessage(lists.allowedDomains, lists.deniedDomains)));
    greeted = true;
  };

  const onFrame = (frame: Buffer): void => {
    const message = parseProxyMessage(frame);
    if (message.t === 'hello') {
      if (greeted) throw new FrameError('a second hello');
      return hello();
    }
    if (!greeted) throw new FrameError('a request before the hello');
    if (message.id <= lastId) throw new FrameError(`request id ${message.id} does not follow ${lastId}`);
    lastId = message.id;
    const { verdict, event } = verdictFor(opts.engine, message, opts.reportOnly);
    stats.requests++;
    if (verdict.action === 'allow') stats.allowed++;
    else stats.denied++;
    opts.audit.emit(event);
    opts.output.write(encodeFrame(verdict));
  };

  const onData = (chunk: Buffer): void => {
    try {
      for (const frame of reader.feed(chunk)) {
        if (over) return;
        onFrame(frame);
      }
    } catch (err) {
      end({ ok: false, error: `protocol violation from srt-proxy: ${(err as Error).message}` });
    }
  };

  opts.input.on('data', onData);
  opts.input.once('end', () => end(reader.pending === 0 ? { ok: true } : { ok: false, error: `stream ended inside a frame (${reader.pending} bytes)` }));
  opts.input.once('error', (err) => end({ ok: false, error: `input: ${err.message}` }));
  opts.output.on('error', (err) => end({ ok: false, error: `output: ${err.message}` }));
  return { ended, stats: () => ({ ...stats }) };
}
