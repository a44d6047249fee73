// The decider link's framing: a 4-byte big-endian length, then that many bytes of one UTF-8
// JSON object. Pure: the reader is fed bytes and hands out whole frames.

/** The largest frame either end reads (srt-proxy's limit). */
export const MAX_FRAME_BYTES = 1 << 20;

export class FrameError extends Error {
  override name = 'FrameError';
}

export function encodeFrame(message: Record<string, unknown>): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  if (body.length > MAX_FRAME_BYTES) throw new FrameError(`frame of ${body.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/** Collects bytes until a frame is whole; chunks are kept as they came (no re-concatenation per chunk). */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** The whole frames in `chunk` and before it; throws FrameError on a length past the limit. */
  feed(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Buffer[] = [];
    for (;;) {
      if (this.buffered < 4) return frames;
      const head = this.peek(4);
      const length = head.readUInt32BE(0);
      if (length > MAX_FRAME_BYTES) throw new FrameError(`frame length ${length} exceeds ${MAX_FRAME_BYTES}`);
      if (this.buffered < 4 + length) return frames;
      frames.push(this.take(4 + length).subarray(4));
    }
  }

  /** Bytes of an unfinished frame (none at a clean end of stream). */
  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!.subarray(0, n);
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined.subarray(0, n);
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}
