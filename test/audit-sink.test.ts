// The audit sink: emit() returns at once whatever the stream does, lines come out whole and in
// order, and close() resolves only after everything queued has been written.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { auditLine, type AuditEvent } from '../src/audit/events.js';
import { openAuditSink, StreamAuditSink } from '../src/audit/sink.js';
import { linePieces, PIPE_BUF, StreamTarget } from '../src/audit/target.js';

const dir = mkdtempSync(join(tmpdir(), 'pc-audit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stream that accepts one small write at a time, late: the slow disk or pipe case. */
class SlowStream extends Writable {
  lines: string[] = [];
  constructor() {
    super({ highWaterMark: 64 });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    setTimeout(() => {
      this.lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    }, 2);
  }
}

describe('audit sink', () => {
  it('writes every event of a burst to the file, in order, by the time close() resolves', async () => {
    const file = join(dir, 'audit.jsonl');
    const sink = openAuditSink(file);
    for (let i = 0; i < 50_000; i++) sink.emit({ kind: 'connect', host: `h${i}.example`, port: 443, allow: true, decision: 'allow', reason: 'r', policy: 'p' });
    await sink.close();
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(50_000);
    expect(JSON.parse(lines[0]!)).toMatchObject({ kind: 'connect', host: 'h0.example' });
    expect(JSON.parse(lines[49_999]!).host).toBe('h49999.example');
    expect(lines.every((l) => typeof JSON.parse(l).time === 'string')).toBe(true);
  });

  it('never makes the emitter wait on a slow stream, and still loses nothing', async () => {
    const stream = new SlowStream();
    const sink = new StreamAuditSink(new StreamTarget(stream));
    const seen: string[] = [];
    sink.onEvent((e) => seen.push(String(e.host)));
    for (let i = 0; i < 2_000; i++) sink.emit({ kind: 'tunnel', host: `t${i}`, bytes_up: i, bytes_down: i, duration_ms: 1 });
    // All 2,000 were accepted synchronously although the stream has written almost nothing yet.
    expect(seen).toHaveLength(2_000);
    expect(stream.lines.length).toBeLessThan(2_000);
    await sink.close();
    expect(stream.lines).toHaveLength(2_000);
    expect(stream.lines.map((l) => JSON.parse(l).host)).toEqual(seen);
  });

  it('writes events that come one by one in batches, soon, without close()', async () => {
    const writes: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        writes.push(chunk.toString());
        done();
      },
    });
    const sink = new StreamAuditSink(new StreamTarget(stream));
    // Events spread over a few milliseconds, as tunnels open: far fewer writes than events.
    for (let i = 0; i < 200; i++) {
      sink.emit({ kind: 'connect', host: `h${i}`, port: 443 });
      if (i % 20 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    for (let i = 0; i < 100 && writes.join('').split('\n').filter(Boolean).length < 200; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    const lines = writes.join('').split('\n').filter(Boolean);
    expect(lines.map((l) => JSON.parse(l).host)).toEqual(Array.from({ length: 200 }, (_, i) => `h${i}`));
    expect(writes.length).toBeLessThanOrEqual(5);
    // A lone event is written too, a moment later, with nothing else to push it out.
    sink.emit({ kind: 'connect', host: 'lone', port: 443 });
    for (let i = 0; i < 100 && !writes.join('').includes('"lone"'); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(writes.join('')).toContain('"lone"');
    await sink.close();
  });

  it('while a write is under way, what arrives waits for the next batch instead of a write of its own', async () => {
    // A target that takes 3 ms per write, and events that keep coming one by one: a sink that
    // wrote again as soon as a write finished would write every ~3 ms; batches come >= 20 ms apart.
    const writes: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        writes.push(chunk.toString());
        setTimeout(done, 3);
      },
    });
    const sink = new StreamAuditSink(new StreamTarget(stream));
    const started = Date.now();
    for (let i = 0; i < 300; i++) {
      sink.emit({ kind: 'connect', host: `h${i}`, port: 443 });
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const elapsed = Date.now() - started;
    await sink.close();
    const lines = writes.join('').split('\n').filter(Boolean);
    expect(lines.map((l) => JSON.parse(l).host)).toEqual(Array.from({ length: 300 }, (_, i) => `h${i}`));
    expect(writes.length).toBeLessThanOrEqual(Math.ceil(elapsed / 20) + 2);
  });

  it('one event is one line of JSON with the time first', () => {
    const line = auditLine({ kind: 'sni', host: 'a\nb', time: '2026-01-01T00:00:00.000Z' });
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1).includes('\n')).toBe(false);
    expect(Object.keys(JSON.parse(line))[0]).toBe('time');
  });

  it('without a time of its own, the event gets the current one, first, its fields after in their order', () => {
    const event: AuditEvent = { kind: 'connect', allow: true, host: 'h"x', port: 443, explicit_ips: true, ancestors: ['/a', '/b'] };
    delete event.explicit_ips;
    const before = Date.now();
    const parsed = JSON.parse(auditLine(event)) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['time', 'kind', 'allow', 'host', 'port', 'ancestors']);
    expect(parsed).toMatchObject({ kind: 'connect', allow: true, host: 'h"x', port: 443, ancestors: ['/a', '/b'] });
    const time = Date.parse(parsed.time as string);
    expect(time).toBeGreaterThanOrEqual(before);
    expect(time).toBeLessThanOrEqual(Date.now());
    expect(auditLine({ kind: 'reload' } as AuditEvent)).toMatch(/^\{"time":"[^"]+","kind":"reload"\}\n$/);
  });

  it('cuts a batch into pieces of whole lines within the limit; an over-long line is a piece alone', () => {
    const text = (...lines: string[]): Buffer => Buffer.from(lines.map((l) => `${l}\n`).join(''));
    const pieces = (data: Buffer, max: number): string[] => linePieces(data, max).map((p) => p.toString());
    expect(pieces(text('aaa', 'bb', 'c'), 100)).toEqual(['aaa\nbb\nc\n']);
    expect(pieces(text('aaa', 'bb', 'c'), 7)).toEqual(['aaa\nbb\n', 'c\n']);
    expect(pieces(text('aaa', 'bb', 'c'), 4)).toEqual(['aaa\n', 'bb\n', 'c\n']);
    expect(pieces(text('a', 'bbbbbbbb', 'c'), 4)).toEqual(['a\n', 'bbbbbbbb\n', 'c\n']);
    expect(pieces(Buffer.alloc(0), 4)).toEqual([]);
    const big = text(...Array.from({ length: 5_000 }, (_, i) => `{"n":${i},"pad":"${'x'.repeat(i % 300)}"}`));
    const cut = linePieces(big, PIPE_BUF);
    expect(Buffer.concat(cut).equals(big)).toBe(true);
    expect(cut.every((p) => p.length <= PIPE_BUF && p[p.length - 1] === 0x0a)).toBe(true);
  });

  it('with a write limit (workers sharing stdout), every write the stream gets is whole lines within PIPE_BUF', async () => {
    const writes: Buffer[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        writes.push(chunk);
        done();
      },
    });
    const sink = new StreamAuditSink(new StreamTarget(stream, false, PIPE_BUF));
    for (let i = 0; i < 3_000; i++) sink.emit({ kind: 'connect', host: `h${i}.example`, port: 443, reason: 'r'.repeat(i % 500) });
    await sink.close();
    expect(writes.length).toBeGreaterThan(10);
    expect(writes.every((w) => w.length <= PIPE_BUF && w[w.length - 1] === 0x0a)).toBe(true);
    const hosts = Buffer.concat(writes).toString().trim().split('\n').map((l) => JSON.parse(l).host);
    expect(hosts).toEqual(Array.from({ length: 3_000 }, (_, i) => `h${i}.example`));
  });
});
