// Load generator for the nft benchmark, run inside the client namespace:
//   node load.mjs connect ADDRESS PORT SECONDS CONCURRENCY   → {"connections", "seconds", "failed"}
//   node load.mjs bulk ADDRESS PORT BYTES                    → {"bytes", "seconds"}
// Both are bounded: connect by SECONDS, bulk by BYTES and a 60 s guard.
import net from 'node:net';

const [mode, address, portText, a, b] = process.argv.slice(2);
const port = Number(portText);
const guard = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ error: 'guard timeout' })}\n`);
  process.exit(1);
}, 60_000);

function connectOnce() {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

if (mode === 'connect') {
  const seconds = Number(a);
  const concurrency = Number(b);
  const start = performance.now();
  const until = start + seconds * 1000;
  let connections = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        if (await connectOnce()) connections++;
        else failed++;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  process.stdout.write(`${JSON.stringify({ connections, seconds: elapsed, failed })}\n`);
} else if (mode === 'bulk') {
  const total = Number(a);
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const start = performance.now();
  const socket = net.connect({ host: address, port });
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
  const elapsed = (performance.now() - start) / 1000;
  process.stdout.write(`${JSON.stringify({ bytes: Number(reply.trim()), seconds: elapsed })}\n`);
} else {
  process.stderr.write('usage: load.mjs connect|bulk …\n');
  process.exit(2);
}
clearTimeout(guard);
