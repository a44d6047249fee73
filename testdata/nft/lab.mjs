// A two-namespace lab for the nft tests and benchmark: a client namespace (where the ruleset
// is loaded, as in a sandbox) and a server namespace with listeners, joined by a veth pair.
//
// The server namespace answers on whole documentation ranges (198.51.100.0/24, 203.0.113.0/24,
// 2001:db8:5::/48 are `local` routes there), so every address and listening port in them
// connects unless the client's ruleset rejects it: a refusal can only come from the fence.
// Nothing here touches the root namespace beyond creating and deleting these two.
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SERVER_V4_RANGES = ['198.51.100.0/24', '203.0.113.0/24'];
export const SERVER_V6_RANGE = '2001:db8:5::/48';
const LINK = { client4: '192.0.2.2', server4: '192.0.2.1', client6: '2001:db8:ff::2', server6: '2001:db8:ff::1' };

let counter = 0;
const live = new Set();
process.once('exit', () => {
  for (const lab of live) lab.closeSync();
});

async function run(file, args, input) {
  const r = await execa(file, args, { input: input ?? '', reject: false, timeout: 60_000 });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(' ')} failed: ${r.stderr || r.message}`);
  return r.stdout;
}

function firstLine(child, what) {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`${what} did not start within 15 s`)), 15_000);
    rl.once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready`)));
  });
}

/**
 * Creates the lab; `close()` removes it (also on process exit). `extraV4Ranges`: more IPv4 ranges
 * the server namespace answers on (special addresses such as 169.254.169.254/32; they exist only
 * between these two namespaces).
 */
export async function createLab({ listeners = 4, extraV4Ranges = [] } = {}) {
  const v4Ranges = [...SERVER_V4_RANGES, ...extraV4Ranges];
  const tag = `${process.pid}x${counter++}`;
  const cli = `pcnft-${tag}-c`;
  const srv = `pcnft-${tag}-s`;
  const vc = `pn${tag}c`;
  const vs = `pn${tag}s`;
  const children = new Set();
  const lab = {
    cli,
    srv,
    link: LINK,
    tcpPorts: [],
    udpPort: 0,
    closeSync() {
      for (const child of children) child.kill('SIGKILL');
      children.clear();
      for (const ns of [cli, srv]) {
        try {
          execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
        } catch {
          // already gone
        }
      }
      live.delete(lab);
    },
    async close() {
      lab.closeSync();
    },
    /** Runs `nft ARGS` in the client namespace (stdin: `input`); returns stdout. */
    nft(args, input) {
      return run('ip', ['netns', 'exec', cli, 'nft', ...args], input);
    },
    /** The client namespace's connection-tracking table, one entry a line (/proc/net/nf_conntrack). */
    async conntrack() {
      const text = await run('ip', ['netns', 'exec', cli, 'cat', '/proc/net/nf_conntrack']);
      return text.split('\n').filter((line) => line.trim() !== '');
    },
    /** Tries tuples from the client namespace; one process for all of them. */
    async probe(tuples, { timeoutMs = 1000, concurrency = 32 } = {}) {
      const out = await run('ip', ['netns', 'exec', cli, process.execPath, path.join(HERE, 'probe.mjs'), String(timeoutMs), String(concurrency)], JSON.stringify(tuples));
      return JSON.parse(out);
    },
    /** A long-lived connection from the client namespace. */
    async session(address, port) {
      const child = spawn('ip', ['netns', 'exec', cli, process.execPath, path.join(HERE, 'session.mjs'), address, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.add(child);
      const rl = readline.createInterface({ input: child.stdout });
      const queue = [];
      const waiters = [];
      rl.on('line', (line) => (waiters.length > 0 ? waiters.shift()(line) : queue.push(line)));
      const next = () =>
        new Promise((resolve) => {
          if (queue.length > 0) return resolve(queue.shift());
          const timer = setTimeout(() => resolve('no answer within 5 s'), 5000);
          waiters.push((line) => {
            clearTimeout(timer);
            resolve(line);
          });
        });
      return {
        next,
        async ping() {
          child.stdin.write('ping\n');
          return next();
        },
        close() {
          child.kill('SIGKILL');
          children.delete(child);
        },
      };
    },
    /** Spawns a long-running process in a namespace; killed by close(). */
    spawnIn(ns, args) {
      const child = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.add(child);
      return child;
    },
  };
  live.add(lab);
  try {
    await run('ip', ['netns', 'add', cli]);
    await run('ip', ['netns', 'add', srv]);
    await run('ip', ['link', 'add', vc, 'netns', cli, 'type', 'veth', 'peer', 'name', vs, 'netns', srv]);
    const script = (ns, lines) => run('ip', ['-n', ns, '-batch', '-'], lines.join('\n') + '\n');
    await script(cli, [
      'link set lo up',
      `link set ${vc} up`,
      `addr add ${LINK.client4}/24 dev ${vc}`,
      `addr add ${LINK.client6}/64 dev ${vc} nodad`,
      ...v4Ranges.map((r) => `route add ${r} via ${LINK.server4}`),
      `route add ${SERVER_V6_RANGE} via ${LINK.server6}`,
    ]);
    await script(srv, [
      'link set lo up',
      `link set ${vs} up`,
      `addr add ${LINK.server4}/24 dev ${vs}`,
      `addr add ${LINK.server6}/64 dev ${vs} nodad`,
      ...v4Ranges.map((r) => `route add local ${r} dev lo`),
      `route add local ${SERVER_V6_RANGE} dev lo`,
    ]);
    const server = lab.spawnIn(srv, [process.execPath, path.join(HERE, 'server.mjs'), String(listeners)]);
    const ready = JSON.parse(await firstLine(server, 'the server'));
    lab.tcpPorts = ready.tcp;
    lab.udpPort = ready.udp;
  } catch (err) {
    lab.closeSync();
    throw err;
  }
  return lab;
}
