// portcullis as a client of OPA's management plane: one bundle pulled into the engine, decision
// logs uploaded, status reported — from the subset of OPA's configuration in config.ts. I/O.
import { randomUUID } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { PolicyEngine } from '../engine/engine.js';
import type { PortcullisOpaConfig } from './config.js';
import { DecisionLogger, type DecisionLogStatus } from './decision-log.js';
import { BundlePuller, type BundleStatus } from './puller.js';
import { requestService } from './service-client.js';

export const PORTCULLIS_VERSION = '0.1.0';

export interface Management {
  engine: PolicyEngine;
  puller: BundlePuller;
  logger: DecisionLogger | undefined;
  /** The first activation (or the first failure to get one): for start-up messages. */
  firstAttempt: Promise<BundleStatus>;
  /** Calls `listener` after each activation of a new revision. */
  onActivated(listener: (revision: string) => void): void;
  stop(): Promise<void>;
}

export interface ManagementOptions {
  config: PortcullisOpaConfig;
  /** Who asked, in decision log events. */
  requestedBy: string;
  log: (line: string) => void;
}

export async function startManagement(opts: ManagementOptions): Promise<Management> {
  const { config } = opts;
  const bundle = config.bundles[0]!;
  const service = config.services[bundle.service]!;
  const engine = PolicyEngine.pending(`no policy bundle has been activated yet (bundle "${bundle.name}" from ${service.url}/${bundle.resource.replace(/^\/+/, '')}): every request is denied until one is`);
  const labels = { id: randomUUID(), version: PORTCULLIS_VERSION, ...config.labels };
  let bundleStatus: BundleStatus = { name: bundle.name };
  let logStatus: DecisionLogStatus | undefined;

  let reporting: Promise<unknown> = Promise.resolve();
  const report = (): void => {
    if (!config.status) return;
    const body = Buffer.from(
      JSON.stringify({ labels, bundles: { [bundle.name]: bundleStatus }, ...(logStatus ? { decision_logs: logStatus } : {}), plugins: { bundle: { state: engine.ready ? 'OK' : 'NOT_READY' } } }),
    );
    const statusService = config.services[config.status.service]!;
    reporting = reporting.then(() =>
      requestService(statusService, { method: 'POST', resource: 'status', headers: { 'content-type': 'application/json' }, body, timeoutMs: 10_000, maxBytes: 64 * 1024 }).catch((err: unknown) =>
        opts.log(`status upload failed: ${(err as Error).message}`),
      ),
    );
  };

  const activationListeners: Array<(revision: string) => void> = [];
  let settleFirst!: (s: BundleStatus) => void;
  const firstAttempt = new Promise<BundleStatus>((resolve) => (settleFirst = resolve));
  const puller = new BundlePuller({
    bundle,
    service,
    keys: config.keys,
    engine,
    persistenceDirectory: config.persistenceDirectory ?? join(homedir(), '.cache', 'portcullis', 'opa'),
    onStatus: (s) => {
      const changed = JSON.stringify({ ...s, last_request: 0, last_successful_request: 0 }) !== JSON.stringify({ ...bundleStatus, last_request: 0, last_successful_request: 0 });
      bundleStatus = s;
      settleFirst(s);
      if (s.code) opts.log(`bundle ${bundle.name}: ${s.message ?? s.code}${engine.ready ? ' (the last good bundle stays active)' : ''}`);
      if (changed) report();
    },
    onActivated: (revision) => {
      opts.log(`bundle ${bundle.name}: revision ${revision} active`);
      for (const listener of activationListeners) listener(revision);
    },
  });

  let logger: DecisionLogger | undefined;
  if (config.decisionLogs) {
    logger = new DecisionLogger({
      config: config.decisionLogs,
      service: config.services[config.decisionLogs.service]!,
      labels,
      bundles: () => ({ [bundle.name]: { revision: puller.status.active_revision ?? '' } }),
      onStatus: (s) => {
        const changed = s.code !== logStatus?.code || s.dropped !== logStatus?.dropped;
        logStatus = s;
        if (changed) report();
      },
    });
    const active = logger;
    engine.observe((o) => active.record(o, opts.requestedBy));
    logger.start();
  }
  await puller.start();
  return {
    engine,
    puller,
    logger,
    firstAttempt,
    onActivated: (listener) => activationListeners.push(listener),
    async stop() {
      await puller.stop();
      await logger?.stop();
      await reporting;
    },
  };
}
