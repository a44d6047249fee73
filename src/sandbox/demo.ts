// `npm run demo`: a simulated internet in a namespace of its own, and an example agent run
// under `portcullis run` with policies/examples/agent.yaml. Nothing leaves this machine.
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBareRepository, startGitServer, type GitServer } from '../sim/git-server.js';
import { startSimulatedInternet, type SimulatedInternet } from '../sim/internet.js';
import { currentFenceCapability } from './capabilities.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const POLICY = 'policies/examples/agent.yaml';
const AGENT = 'policies/examples/agent-demo.sh';
const HOSTS = ['api.llm.example', 'git.code.example', 'tickets.corp.example', 'paste.bin.example'];
const GIT_HOST = 'git.code.example';
const GIT_PORT = 8443;

const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

/** The git host: `org/repo.git` (one commit) served by git http-backend over HTTPS. */
async function startGitHost(sim: SimulatedInternet, work: string): Promise<GitServer> {
  const projectRoot = join(work, 'git');
  mkdirSync(join(projectRoot, 'org'), { recursive: true });
  createBareRepository(join(projectRoot, 'org'), 'repo', 'the demo repository\n');
  return startGitServer(sim.netns, { projectRoot, port: GIT_PORT, cert: await sim.ca.issue([GIT_HOST]) });
}

async function main(): Promise<number> {
  const capability = currentFenceCapability();
  if (!capability.ok) {
    process.stderr.write(`The demo builds network namespaces and needs root: ${capability.why}. Try: sudo npm run demo\n`);
    return 1;
  }
  const sim = await startSimulatedInternet({ hosts: Object.fromEntries(HOSTS.map((h) => [h, {}])) });
  // Files the sandbox user must read live in a world-readable directory of their own, not
  // under /tmp (CMD has a /tmp of its own).
  const work = mkdtempSync('/var/tmp/portcullis-demo-');
  let git: GitServer | undefined;
  try {
    chmodSync(work, 0o755);
    const caFile = join(work, 'ca.pem');
    writeFileSync(caFile, sim.ca.certPem, { mode: 0o644 });
    const agent = join(work, 'agent-demo.sh');
    copyFileSync(join(ROOT, AGENT), agent);
    chmodSync(agent, 0o755);
    const audit = join(work, 'audit.jsonl');
    git = await startGitHost(sim, work);

    // --upstream-ca: the proxy verifies the simulated servers of inspected connections.
    const args = ['run', '--policy', join(ROOT, POLICY), '--resolver', `${sim.dns.address}:${sim.dns.port}`, '--upstream-ca', caFile, '--audit', audit, '--live', '--', 'bash', agent];
    const out = process.stdout;
    out.write(`${bold('portcullis demo')}: an AI agent behind one policy file\n\n`);
    out.write(`  policy   ${POLICY}\n`);
    out.write('             llm-api      curl or python3  → api.llm.example:443\n');
    out.write('             source-code  git only         → git.code.example:8443, HTTPS inspected: clone, never push\n');
    out.write('             tickets      any program      → tickets.corp.example:443, HTTPS inspected: GET /v1/** only, never /v1/admin/**\n');
    out.write(`  world    a simulated internet in network namespace ${sim.netns}: ${HOSTS.join(', ')}\n`);
    out.write('           (documentation addresses, a local DNS server; no real network is touched)\n');
    out.write('           and git http-backend serving org/repo.git on git.code.example:8443\n');
    out.write(`  command  portcullis run --policy ${POLICY} --live -- bash ${AGENT}\n`);
    out.write('           CMD runs in its own network namespace as an unprivileged user; the proxy, the DNS proxy\n');
    out.write('           and an nftables fence are its only way out. Lines starting "portcullis:" are its decisions.\n');
    out.write('           The run makes a CA of its own and CMD trusts it with no flag: inspected HTTPS is decided per request.\n');

    const code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'dist/cli/main.js'), ...args], {
        cwd: work,
        stdio: 'inherit',
        env: { ...process.env, DEMO_CA: caFile, DEMO_DIRECT_IP: sim.hosts['paste.bin.example']?.v4 ?? '' },
      });
      child.on('exit', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
      child.on('error', () => resolve(1));
    });
    const lines = (existsSync(audit) ? readFileSync(audit, 'utf8') : '').split('\n').filter((l) => l.trim() !== '').length;
    out.write(`\nThe audit log had ${lines} JSON events (portcullis run --audit FILE keeps them).\n`);
    return code;
  } finally {
    await git?.close();
    rmSync(work, { recursive: true, force: true });
    await sim.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
