// `portcullis proxy` in one process (the default, --workers 1): serves, reloads the policy on
// SIGHUP and when the file changes, reopens the audit file on SIGUSR1 (log rotation), and on
// SIGTERM/SIGINT stops accepting, flushes the audit sink and exits 0.
import { watchPolicyFile } from '../proxy/policy-watch.js';
import { reportUnwritten } from './audit-options.js';
import { writePlaceholderFile } from './placeholder-file.js';
import { limitsFrom, listeningLine, type ProxyCommandOptions } from './proxy-options.js';
import { listeningFacts, prepareProxy, startPrepared } from './proxy-setup.js';

export async function serveInOneProcess(opts: ProxyCommandOptions): Promise<void> {
  const prepared = await prepareProxy(opts, { label: 'proxy' });
  const { source, audit } = prepared;
  if (opts.placeholders !== undefined) writePlaceholderFile(opts.placeholders, source.engine.credentials);
  const proxy = await startPrepared(prepared, opts, { listen: opts.listen, sniListen: opts.sniListen }, limitsFrom(opts));
  source.onChange(() => proxy.policyChanged());
  process.stderr.write(listeningLine(listeningFacts(prepared, opts, proxy.address, proxy.sniAddress)));
  const reload = (): void => {
    void proxy.reload().then((r) => {
      if (r.ok && opts.placeholders !== undefined) writePlaceholderFile(opts.placeholders, source.engine.credentials, false);
      process.stderr.write(r.ok ? `portcullis proxy: policy reloaded (${r.closed} connection(s) closed)\n` : `portcullis proxy: reload refused, previous policy stays:\n${r.error ?? ''}\n`);
    });
  };
  const watcher = opts.watch && source.watchFile !== undefined ? watchPolicyFile(source.watchFile, reload) : { close() {} };
  process.on('SIGHUP', reload);
  process.on('SIGUSR1', () => audit.reopen());
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    watcher.close();
    void (async () => {
      await proxy.close();
      await source.stop();
      await audit.close();
      reportUnwritten(audit, 'proxy');
      process.exit(0);
    })();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
