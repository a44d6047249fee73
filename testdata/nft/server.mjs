// Listeners for the nft namespace tests, run inside the server namespace:
//   node server.mjs COUNT
// Opens COUNT dual-stack TCP listeners on ephemeral ports (each echoes what it receives, and
// answers a half-close with the number of bytes it got, for bulk transfers) and one UDP echo
// socket on the same port number as the last TCP listener (so one ADDR:PORT serves DNS over UDP
// and TCP), prints {"tcp":[ports],"udp":port} on one line, and runs until killed or stdin closes.
import net from 'node:net';
import dgram from 'node:dgram';

const count = Math.max(1, Math.min(64, Number(process.argv[2] ?? 4)));

function listen() {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      let received = 0;
      socket.on('data', (chunk) => {
        received += chunk.length;
        // Echo small messages; a bulk sender only wants the final count.
        if (chunk.length <= 64 && received <= 64) socket.write(chunk);
      });
      socket.on('end', () => socket.end(`${received}\n`));
      socket.on('error', () => socket.destroy());
    });
    server.on('error', reject);
    server.listen({ port: 0, host: '::', ipv6Only: false, backlog: 4096 }, () => resolve(server.address().port));
  });
}

const tcp = [];
for (let i = 0; i < count; i++) tcp.push(await listen());
const udpSocket = dgram.createSocket({ type: 'udp6', ipv6Only: false });
udpSocket.on('message', (msg, rinfo) => udpSocket.send(msg, rinfo.port, rinfo.address));
await new Promise((resolve) => udpSocket.bind({ port: tcp[tcp.length - 1], address: '::' }, resolve));
process.stdout.write(`${JSON.stringify({ tcp, udp: udpSocket.address().port })}\n`);
// Exit with the parent: stdin closes when the test process goes away.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
