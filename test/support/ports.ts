// Loopback ports for servers a test starts. A port found free is free when it is chosen, not when
// a child process binds it a moment later (another test, or a client's ephemeral port, may take
// it in between): onFreePort starts again on another port when that happened.
import net from 'node:net';

/** A loopback port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A failure that says the port was taken (in the error's message, e.g. a child's log). */
function portTaken(err: unknown): boolean {
  return /address already in use|EADDRINUSE/i.test(String((err as Error)?.message ?? err));
}

/** Runs `start` on a free port; when it fails because the port was taken meanwhile, on another (at most `attempts` ports). */
export async function onFreePort<T>(start: (port: number) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (err) {
      if (attempt >= attempts || !portTaken(err)) throw err;
    }
  }
}

/** Listens on an ephemeral loopback port (chosen by the kernel as it binds: no race) and gives it. */
export async function listenOnLoopback(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}
