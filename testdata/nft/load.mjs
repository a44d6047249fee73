// Load generator for the nft benchmark, run inside a client namespace. It stays up and takes
// one command per line on stdin, answering each with one JSON line on stdout, so that many short
// runs can alternate between namespaces without paying for a process start each time:
//   connect ADDRESS PORT MILLISECONDS CONCURRENCY   → {"connections", "seconds", "failed"}
//   bulk ADDRESS PORT BYTES                          → {"bytes", "seconds"}
// Every command is bounded (connect by its time, bulk by its bytes and a 60 s guard); the
// process exits when stdin closes.
import net from 'node:net';
import readline from 'node:readline';

const BULK_GUARD_MS = 60_000;

function connectOnce(host, port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Opens and closes connections, CONCURRENCY at a time, for MILLISECONDS. */
async function connectRun(host, port, milliseconds, concurrency) {
  const start = performance.now();
  const until = start + milliseconds;
  let connections = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        if (await connectOnce(host, port)) connections++;
        else failed++;
      }
    }),
  );
  return { connections, failed, seconds: (performance.now() - start) / 1000 };
}

/** Sends BYTES on one connection; the server answers the half-close with the count it got. */
async function bulkRun(host, port, total) {
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const start = performance.now();
  const socket = net.connect({ host, port });
  const guard = setTimeout(() => socket.destroy(new Error('bulk transfer guard timeout')), BULK_GUARD_MS);
  try {
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    let sent = 0;
    while (sent < total) {
      const piece = sent + chunk.length <= total ? chunk : chunk.subarray(0, total - sent);
      sent += piece.length;
      if (!socket.write(piece)) await new Promise((resolve) => socket.once('drain', resolve));
    }
    socket.end();
    let reply = '';
    socket.on('data', (d) => (reply += d));
    await new Promise((resolve) => socket.once('close', resolve));
    return { bytes: Number(reply.trim()), seconds: (performance.now() - start) / 1000 };
  } finally {
    clearTimeout(guard);
  }
}

async function run(line) {
  const [mode, host, portText, a, b] = line.trim().split(/\s+/);
  const port = Number(portText);
  if (mode === 'connect') return connectRun(host, port, Number(a), Number(b));
  if (mode === 'bulk') return bulkRun(host, port, Number(a));
  return { error: `unknown command "${mode}": connect|bulk …` };
}

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line.trim() === '') continue;
  const result = await run(line).catch((err) => ({ error: err.message }));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
