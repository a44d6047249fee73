// The proxy bench's client: one tunnel set-up (connect, CONNECT, ping, first byte back), and, run
// as a script, the rate or time-to-first-byte measurement in a process of its own:
//   node bench/proxy-client.mjs '{"mode":"rate"|"ttfb","proxyPort":N|null,"address":A,"port":P,
//                                 "concurrency":C,"seconds":S,"samples":K}'
// prints its result as JSON. `proxyPort` null: straight to the upstream.
import net from 'node:net';
import { fileURLToPath } from 'node:url';

/** Opens a connection to the upstream (directly or through a CONNECT proxy); resolves with the socket. */
export function openPath(path, address, port) {
  return new Promise((resolve, reject) => {
    if (!path.proxyPort) {
      const s = net.connect({ host: address, port, noDelay: true }, () => resolve(s));
      s.once('error', reject);
      return;
    }
    const s = net.connect({ host: '127.0.0.1', port: path.proxyPort, noDelay: true });
    s.once('error', reject);
    let buf = Buffer.alloc(0);
    const onData = (c) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      s.off('data', onData);
      const status = buf.toString('latin1').split(' ')[1];
      if (status !== '200') return reject(new Error(`CONNECT answered ${status}: ${buf.toString().slice(0, 300)}`));
      if (buf.length > end + 4) s.unshift(buf.subarray(end + 4));
      resolve(s);
    };
    s.on('data', onData);
    s.on('connect', () => s.write(`CONNECT ${address}:${port} HTTP/1.1\r\nHost: ${address}:${port}\r\n\r\n`));
  });
}

/** One tunnel setup: connect, CONNECT, ping, first byte back. Returns ms to first byte. */
export async function pingOnce(path, address, keep, port) {
  const t0 = performance.now();
  const s = await openPath(path, address, port);
  await new Promise((resolve, reject) => {
    s.once('data', resolve);
    s.once('error', reject);
    s.write(keep ? 'P\n' : 'Q\n');
  });
  const ms = performance.now() - t0;
  if (keep) return { ms, socket: s };
  // The far end closes first (see the upstream); answer its end, then let go.
  await new Promise((resolve) => {
    if (s.readableEnded) return resolve();
    s.once('end', resolve);
    s.once('close', resolve);
    s.resume();
  });
  s.destroy();
  return { ms };
}

async function tunnelsPerSecond(path, address, port, concurrency, seconds) {
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        try {
          await pingOnce(path, address, false, port);
          done++;
        } catch {
          failed++;
          if (failed > 1000) return;
        }
      }
    }),
  );
  return { rate: done / seconds, failed };
}

async function ttfb(path, address, port, count) {
  const samples = [];
  for (let i = 0; i < count; i++) samples.push((await pingOnce(path, address, false, port)).ms);
  samples.sort((a, b) => a - b);
  const q = (p) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))];
  return { p50: q(0.5), p99: q(0.99) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const request = JSON.parse(process.argv[2]);
  const path = request.proxyPort === null ? {} : { proxyPort: request.proxyPort };
  const result = request.mode === 'rate' ? await tunnelsPerSecond(path, request.address, request.port, request.concurrency, request.seconds) : await ttfb(path, request.address, request.port, request.samples);
  process.stdout.write(JSON.stringify(result));
}
