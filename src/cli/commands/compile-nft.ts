// `portcullis compile --target nft`: the policy as one nftables script for a sandbox namespace.
import { renderRuleset, type RenderOptions } from '../../nft/render.js';
import type { LoadedPolicy } from '../../policy/load.js';
import { parseHostPort } from '../repeatable.js';

export function compileNftCommand(loaded: LoadedPolicy, opts: { proxy?: string; dns?: string; sni?: string }): string {
  const options: RenderOptions = {};
  if (opts.proxy !== undefined) options.proxy = parseHostPort(opts.proxy);
  if (opts.dns !== undefined) options.dns = parseHostPort(opts.dns);
  if (opts.sni !== undefined) options.sni = parseHostPort(opts.sni);
  return renderRuleset(loaded.policies, options);
}
