// One DNS-over-TCP client connection: two-byte length frames, each query answered in turn
// (bounded frame size and queries in flight); a client that half-closes after its last query
// gets its answers, then the end.
import type net from 'node:net';
import { tcpFrame } from './wire.js';

/** A TCP query frame longer than this is not a query: the connection is dropped. */
const MAX_TCP_QUERY = 1024;
const MAX_TCP_IN_FLIGHT = 32;

export function serveTcpConnection(socket: net.Socket, answer: (message: Buffer) => Promise<Buffer | null>, idleMs: number): void {
  socket.on('error', () => undefined);
  socket.setTimeout(idleMs, () => socket.destroy());
  let pending: Buffer = Buffer.alloc(0);
  let inFlight = 0;
  let ended = false;
  const endIfDone = (): void => {
    if (ended && inFlight === 0 && !socket.destroyed) socket.end();
  };
  socket.on('end', () => {
    ended = true;
    endIfDone();
  });
  const reply = (message: Buffer): void => {
    inFlight++;
    answer(message)
      .then((answered) => {
        inFlight--;
        if (answered === null) return void socket.destroy();
        if (socket.destroyed) return;
        socket.write(tcpFrame(answered));
        endIfDone();
      })
      .catch(() => socket.destroy());
  };
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 2) {
      const length = pending.readUInt16BE(0);
      if (length > MAX_TCP_QUERY || inFlight >= MAX_TCP_IN_FLIGHT) return void socket.destroy();
      if (pending.length < 2 + length) return;
      const message = Buffer.from(pending.subarray(2, 2 + length));
      pending = pending.subarray(2 + length);
      reply(message);
    }
  });
}
