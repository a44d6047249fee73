// The servers of the simulated internet, run as a child process inside its namespace
// (`ip netns exec <ns> node serve.js`). The configuration arrives as one JSON line on stdin;
// when stdin closes (the parent went away), the process exits, so nothing outlives its parent.
//
//   GET  /bytes/N   N bytes of 'x' (application/octet-stream)
//   GET  /status/N  an empty answer with status N
//   any  /echo…     JSON { host, method, path, tls, headers, body }: what the request carried
//                   (credential tests), also kept for GET /seen
//   GET  /seen      JSON [ every /echo… request so far, as above ] (at most the last 1000)
//   any  other      JSON { host, method, path, tls, bodyBytes }
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

export interface ServeConfig {
  /** Certificate presented when the client sends no SNI or an unknown name. */
  defaultCert: { certPem: string; keyPem: string };
  /** Certificate per hostname (lower case), chosen by SNI. */
  certs: Record<string, { certPem: string; keyPem: string }>;
  httpsPort: number;
  httpPort: number;
  extraPorts: number[];
}

const CHUNK = Buffer.alloc(64 * 1024, 'x');
const MAX_BYTES = 16 * 1024 * 1024 * 1024;

function streamBytes(res: http.ServerResponse, total: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= piece.length;
      if (!res.write(piece)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

const seen: unknown[] = [];
const MAX_ECHO_BODY = 1024 * 1024;

function answerJson(res: http.ServerResponse, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function handle(isTls: boolean) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    let bodyBytes = 0;
    const kept: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      if (bodyBytes < MAX_ECHO_BODY) kept.push(chunk);
      bodyBytes += chunk.length;
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const path = req.url ?? '/';
      const bytes = /^\/bytes\/(\d+)$/.exec(path);
      if (req.method === 'GET' && bytes) {
        const n = Number(bytes[1]);
        if (n > MAX_BYTES) {
          res.writeHead(400).end();
          return;
        }
        streamBytes(res, n);
        return;
      }
      if (req.method === 'GET' && path === '/seen') return answerJson(res, seen);
      if (path.startsWith('/echo')) {
        const echo = { host: req.headers.host ?? '', method: req.method, path, tls: isTls, headers: req.headers, body: Buffer.concat(kept).toString('latin1') };
        seen.push(echo);
        if (seen.length > 1000) seen.shift();
        return answerJson(res, echo);
      }
      const status = /^\/status\/(\d{3})$/.exec(path);
      if (status) {
        res.writeHead(Number(status[1])).end();
        return;
      }
      const sni = (req.socket as tls.TLSSocket & { servername?: string | false }).servername;
      const host = (req.headers.host ?? (typeof sni === 'string' ? sni : '')).replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      const body = JSON.stringify({ host, method: req.method, path, tls: isTls, bodyBytes });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };
}

function listen(server: net.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // `::` without ipv6Only takes IPv4 too.
    server.listen({ port, host: '::' }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export async function serve(config: ServeConfig): Promise<net.Server[]> {
  const contexts = new Map<string, tls.SecureContext>();
  for (const [name, pair] of Object.entries(config.certs)) {
    contexts.set(name.toLowerCase(), tls.createSecureContext({ cert: pair.certPem, key: pair.keyPem }));
  }
  const httpsServer = https.createServer(
    {
      cert: config.defaultCert.certPem,
      key: config.defaultCert.keyPem,
      SNICallback: (servername, done) => done(null, contexts.get(servername.toLowerCase().replace(/\.$/, ''))),
    },
    handle(true),
  );
  const httpServer = http.createServer(handle(false));
  const echoServers = config.extraPorts.map(() =>
    net.createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.pipe(socket);
    }),
  );
  const servers: net.Server[] = [httpsServer, httpServer, ...echoServers];
  for (const server of servers) server.on('clientError', (_err: Error, socket: net.Socket) => socket.destroy());
  await listen(httpsServer, config.httpsPort);
  await listen(httpServer, config.httpPort);
  for (const [i, server] of echoServers.entries()) await listen(server, config.extraPorts[i] ?? 0);
  return servers;
}

function readConfigLine(): Promise<ServeConfig> {
  // A plain 'data' listener: leaving a for-await loop would destroy stdin, our lifeline.
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString();
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      process.stdin.off('data', onData);
      process.stdin.off('end', onEnd);
      process.stdin.pause();
      try {
        resolve(JSON.parse(buffered.slice(0, newline)) as ServeConfig);
      } catch (err) {
        reject(err);
      }
    };
    const onEnd = (): void => reject(new Error('serve: no configuration on stdin'));
    process.stdin.on('data', onData);
    process.stdin.on('end', onEnd);
  });
}

async function main(): Promise<void> {
  const config = await readConfigLine();
  await serve(config);
  process.stdout.write('ready\n');
  // The parent holds our stdin open for as long as it wants us; its end is our end.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`serve: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
