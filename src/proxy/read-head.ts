// Reading a connection's first message (an HTTP request head, a ClientHello) before anything
// else happens: chunks go to an incremental reader until it has an answer or the deadline
// passes. Nothing is looked up for a connection that never completes its head.
import type net from 'node:net';

export interface IncrementalReader<R extends { status: string }> {
  /** The answer so far: status 'incomplete' until the message is complete (or wrong). */
  feed(chunk: Buffer): R;
}

/** A reader's answer once it is no longer 'incomplete'. */
type Complete<R> = Exclude<R, { status: 'incomplete' }>;

/**
 * Feeds `client`'s bytes (starting with `first`, when the listener already read some) to
 * `reader`. On an answer the client is paused and `onAnswer` called; at `deadline`
 * (performance.now() time) `onTimeout` instead.
 */
export function readHead<R extends { status: string }>(
  client: net.Socket,
  reader: IncrementalReader<R>,
  deadline: number,
  onTimeout: () => void,
  onAnswer: (answer: Complete<R>) => void,
  first?: Buffer,
): void {
  if (first) {
    const answer = reader.feed(first);
    if (answer.status !== 'incomplete') return onAnswer(answer as Complete<R>);
  }
  const onData = (chunk: Buffer): void => {
    const answer = reader.feed(chunk);
    if (answer.status === 'incomplete') return;
    clearTimeout(timer);
    client.off('data', onData);
    client.pause();
    onAnswer(answer as Complete<R>);
  };
  const timer = setTimeout(
    () => {
      client.off('data', onData);
      onTimeout();
    },
    Math.max(0, deadline - performance.now()),
  );
  client.once('close', () => clearTimeout(timer));
  client.on('data', onData);
  client.resume();
}

/** A reader whose answer is the first chunk itself: for listeners that dispatch on the first bytes. */
export const FIRST_BYTES: IncrementalReader<{ status: 'ok'; chunk: Buffer }> = { feed: (chunk) => ({ status: 'ok', chunk }) };
