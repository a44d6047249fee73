// `opa run --server` on a free loopback port (a new port if another process took it first),
// ready once `readyPath` answers 200 (`/health?bundles`: its bundles are activated).
import { spawn, type ChildProcess } from 'node:child_process';
import { onFreePort } from './ports.js';

export interface OpaServer {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

export function startOpaServer(binary: string, args: string[], options: { cwd?: string; readyPath?: string } = {}): Promise<OpaServer> {
  return onFreePort(async (port) => {
    const child = spawn(binary, ['run', '--server', '--addr', `127.0.0.1:${port}`, '--log-level', 'error', ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd });
    let log = '';
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    const url = `http://127.0.0.1:${port}`;
    const stop = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve)));
    };
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`opa exited ${child.exitCode}: ${log}`);
      try {
        if ((await fetch(`${url}${options.readyPath ?? '/health'}`)).status === 200) return { url, port, child, stop };
      } catch {
        // not listening yet
      }
      if (i === 150) {
        await stop();
        throw new Error(`opa not ready after 15 s: ${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
}
