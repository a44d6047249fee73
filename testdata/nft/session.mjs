// One long-lived TCP connection from inside the client namespace:
//   node session.mjs ADDRESS PORT
// Prints "connected" (or "error CODE"), then for every "ping" line on stdin sends it and prints
// "pong" when the echo comes back, or "error CODE" when the connection fails. Bounded: each
// ping gives up after 2 s ("timeout").
import net from 'node:net';
import readline from 'node:readline';

const [address, port] = [process.argv[2], Number(process.argv[3])];
const socket = net.connect({ host: address, port });
let waiting = null;
socket.once('connect', () => process.stdout.write('connected\n'));
socket.on('error', (err) => {
  process.stdout.write(`error ${err.code ?? err.message}\n`);
  process.exit(0);
});
socket.on('data', () => {
  if (waiting) {
    clearTimeout(waiting);
    waiting = null;
    process.stdout.write('pong\n');
  }
});
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line !== 'ping') return;
  socket.write('ping');
  waiting = setTimeout(() => {
    waiting = null;
    process.stdout.write('timeout\n');
  }, 2000);
});
lines.on('close', () => {
  socket.destroy();
  process.exit(0);
});
