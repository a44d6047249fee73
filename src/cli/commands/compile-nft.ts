// `portcullis compile --target nft`: filled in by the nft compiler.
import type { LoadedPolicy } from '../../policy/load.js';

export function compileNftCommand(_loaded: LoadedPolicy, _opts: { proxy?: string; dns?: string }): string {
  throw new Error('the nft target is not available in this build');
}
