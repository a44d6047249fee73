// The sandbox's way out, started on the root-namespace side of its veth: the proxy
// (CONNECT/forward HTTP, plus the SNI listener nft redirects direct TCP/443 to) and the DNS
// proxy (answers only names the policy covers, fills the nft host sets in the sandbox).
import { startDnsProxy } from '../dns/proxy.js';
import { PolicyEngine } from '../engine/engine.js';
import { NftSetFeeder } from '../nft/set-feeder.js';
import { startProxy, type UpstreamProxy } from '../proxy/server.js';
import type { EgressContext, RunningEgress } from './sandbox.js';
import { systemResolver } from './upstream-resolver.js';

/** `upstreamProxy`: the proxy's connections go on through it (--upstream-proxy). */
export async function startSandboxEgress(ctx: EgressContext, upstreamProxy?: UpstreamProxy): Promise<RunningEgress> {
  const resolver = ctx.resolver ?? systemResolver() ?? undefined;
  if (ctx.plan.dns && !resolver) throw new Error('no upstream DNS server: give --resolver ADDR:PORT');
  // Independent listeners: start both at once (the proxy spends most of its start waiting for
  // the policy engine's wasm to compile, and the engine compiles while CMD's anchor pid is
  // awaited). The engine is built from the policy runSandbox has loaded already, rather than by
  // the proxy reading the file again.
  const [proxy, dns] = await Promise.allSettled([
    Promise.all([ctx.wasm ? PolicyEngine.fromWasm(ctx.wasm, ctx.loaded.data, ctx.policyFile) : PolicyEngine.create(ctx.loaded, [], ctx.credentials), ctx.anchorPid]).then(([engine, anchorPid]) =>
      startProxy({
        policyFile: ctx.policyFile,
        engine,
        listen: ctx.plan.proxy,
        ...(ctx.plan.sni ? { sniListen: ctx.plan.sni } : {}),
        audit: ctx.audit,
        ...(ctx.auditFailure ? { auditFailure: ctx.auditFailure } : {}),
        ...(resolver ? { resolver } : {}),
        reportOnly: ctx.reportOnly,
        ...(anchorPid !== undefined ? { anchorPid } : {}),
        ...(ctx.inspection ? { inspection: ctx.inspection } : {}),
        ...(upstreamProxy ? { upstreamProxy } : {}),
      }),
    ),
    ctx.plan.dns && resolver
      ? startDnsProxy({
          listen: ctx.plan.dns,
          upstream: resolver,
          policies: ctx.loaded.policies,
          feeder: new NftSetFeeder(ctx.netns !== undefined ? { netns: ctx.netns } : {}),
          audit: ctx.audit,
          credentials: ctx.credentials,
        })
      : undefined,
  ]);
  if (proxy.status === 'rejected' || dns.status === 'rejected') {
    // Close the one that started; report the failure (the proxy's, if both failed).
    if (proxy.status === 'fulfilled') await proxy.value.close();
    if (dns.status === 'fulfilled') await dns.value?.close();
    throw proxy.status === 'rejected' ? proxy.reason : (dns as PromiseRejectedResult).reason;
  }
  const running = dns.value;
  return {
    proxy: proxy.value.address,
    ...(running ? { names: (address: string) => running.handedOut(address) } : {}),
    async close() {
      await Promise.allSettled([proxy.value.close(), running?.close()]);
    },
  };
}
