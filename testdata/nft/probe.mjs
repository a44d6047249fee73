// Tries many TCP (or UDP) tuples from inside the client namespace and prints one JSON array:
//   echo '[{"address":"198.51.100.7","port":8080}, …]' | node probe.mjs [TIMEOUT_MS] [CONCURRENCY]
// Each result is "open" (TCP connected / UDP echo came back), "timeout", or the error code
// (ECONNREFUSED, EHOSTUNREACH, ECONNRESET, EACCES, …). UDP tuples carry "udp": true. Every attempt is bounded by TIMEOUT_MS.
import net from 'node:net';
import dgram from 'node:dgram';

const timeoutMs = Number(process.argv[2] ?? 1000);
const concurrency = Number(process.argv[3] ?? 32);
let input = '';
for await (const chunk of process.stdin) input += chunk;
const tuples = JSON.parse(input);

function tryTcp({ address, port }) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port });
    const done = (result) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.once('connect', () => done('open'));
    socket.once('error', (err) => done(err.code ?? String(err.message)));
  });
}

function tryUdp({ address, port, connected }) {
  return new Promise((resolve) => {
    const socket = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
    const done = (result) => {
      clearTimeout(timer);
      socket.close();
      resolve(result);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.once('message', () => done('open'));
    socket.once('error', (err) => done(err.code ?? String(err.message)));
    // Unconnected by default: the server namespace may answer from another of its addresses.
    // Connected ({connected: true}) to see ICMP errors, which only a connected socket gets.
    if (connected) socket.connect(port, address, () => socket.send('probe'));
    else socket.send('probe', port, address);
  });
}

const results = new Array(tuples.length);
let next = 0;
async function worker() {
  while (next < tuples.length) {
    const i = next++;
    const t = tuples[i];
    results[i] = await (t.udp ? tryUdp(t) : tryTcp(t));
  }
}
await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
process.stdout.write(`${JSON.stringify(results)}\n`);
