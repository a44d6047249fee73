// The sandbox's way out, started on the root-namespace side of its veth: the proxy
// (CONNECT/forward HTTP, plus the SNI listener nft redirects direct TCP/443 to) and the DNS
// proxy (answers only names the policy covers, fills the nft host sets in the sandbox).
import { startDnsProxy, type RunningDnsProxy } from '../dns/proxy.js';
import { NftSetFeeder } from '../nft/set-feeder.js';
import { startProxy } from '../proxy/server.js';
import type { EgressContext, RunningEgress } from './sandbox.js';
import { systemResolver } from './upstream-resolver.js';

export async function startSandboxEgress(ctx: EgressContext): Promise<RunningEgress> {
  const resolver = ctx.resolver ?? systemResolver() ?? undefined;
  const proxy = await startProxy({
    policyFile: ctx.policyFile,
    listen: ctx.plan.proxy,
    ...(ctx.plan.sni ? { sniListen: ctx.plan.sni } : {}),
    audit: ctx.audit,
    ...(resolver ? { resolver } : {}),
    reportOnly: ctx.reportOnly,
    ...(ctx.anchorPid !== undefined ? { anchorPid: ctx.anchorPid } : {}),
  });
  let dns: RunningDnsProxy | undefined;
  try {
    if (ctx.plan.dns) {
      if (!resolver) throw new Error('no upstream DNS server: give --resolver ADDR:PORT');
      dns = await startDnsProxy({
        listen: ctx.plan.dns,
        upstream: resolver,
        policies: ctx.loaded.policies,
        feeder: new NftSetFeeder(ctx.netns !== undefined ? { netns: ctx.netns } : {}),
        audit: ctx.audit,
      });
    }
  } catch (err) {
    await proxy.close();
    throw err;
  }
  const running = dns;
  return {
    proxy: proxy.address,
    ...(running ? { names: (address: string) => running.handedOut(address) } : {}),
    async close() {
      await Promise.allSettled([proxy.close(), running?.close()]);
    },
  };
}
