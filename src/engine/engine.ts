// The policy engine: the compiled Rego (wasm) plus the policy's data, answering decide()
// synchronously. Replacing the policy is one atomic swap of the loaded instance; a failing
// load leaves the old one in force. Evaluation errors deny (fail closed).
import * as opaWasm from '@open-policy-agent/opa-wasm';
import type { LoadedPolicy as WasmPolicy } from '@open-policy-agent/opa-wasm';
import { CredentialStore } from '../credentials/store.js';
import { loadPolicyFile, type LoadedPolicy } from '../policy/load.js';
import type { Decision, DecisionInput, PolicyData } from '../policy/types.js';
import { compiledWasm } from './bundle.js';
import { ENTRYPOINT } from './opa-cli.js';

// The typings name only the async loader; the package's default export also carries the sync
// one. Imported (not required at run time) so that the CLI bundle includes it.
const { loadPolicySync } = (opaWasm as unknown as { default: { loadPolicySync: (wasm: BufferSource | WebAssembly.Module, memory?: number) => WasmPolicy } }).default;

export class EngineLoadError extends Error {
  override name = 'EngineLoadError';
}

interface Loaded {
  wasm: WasmPolicy;
  data: PolicyData;
  source: string;
}

function denyOnError(reason: string): Decision {
  return { allow: false, decision: 'deny', reason: `policy evaluation failed (${reason}); denied`, policy: null };
}

/** Names of the builtins the module would call out to JavaScript for. */
function requiredJsBuiltins(wasm: WasmPolicy): string[] {
  const exports = (wasm.wasmInstance as WebAssembly.Instance).exports as Record<string, (...a: number[]) => number>;
  const address = exports.opa_json_dump!(exports.builtins!());
  const bytes = new Uint8Array(wasm.mem.buffer);
  let end = address;
  while (bytes[end] !== 0) end++;
  return Object.keys(JSON.parse(Buffer.from(bytes.subarray(address, end)).toString('utf8')) as object);
}

function instantiate(module: WebAssembly.Module, data: PolicyData, source: string): Loaded {
  const wasm = loadPolicySync(module, 16);
  // Builtins not compiled into the wasm would run as JS fallbacks and could answer
  // differently from `opa eval`; refuse such a bundle.
  const missing = requiredJsBuiltins(wasm);
  if (missing.length > 0) throw new EngineLoadError(`bundle needs non-native builtins: ${missing.join(', ')}`);
  wasm.setData({ portcullis: data });
  return { wasm, data, source };
}

/** Decisions kept per policy: a client asks the same question again and again. */
const MAX_KEPT_DECISIONS = 4096;

const NO_POLICY: PolicyData = { policies: {}, index: { exact: {}, wildcard: {}, hostless: {} } };

/** What the engine tells an observer about each decision (decision logs). */
export interface DecisionObservation {
  input: DecisionInput;
  result: Decision;
  /** Evaluation time, ns (0 when the answer was kept from an earlier evaluation). */
  evalNs: number;
}

export class PolicyEngine {
  /** Null until a first policy arrives (a bundle service not yet answered): every decision denies. */
  private current: Loaded | null;
  private pendingReason = '';
  private observers: Array<(o: DecisionObservation) => void> = [];
  /**
   * Decisions of the current policy by input. The built-in Rego is a pure function of input
   * and data, so an answer can be reused until the policy is replaced; an extension might not
   * be (time, randomness), so with extensions every question is evaluated.
   */
  private decisions: Map<string, Decision> | null;
  /**
   * The credentials' values and placeholders, beside the policy and never inside it: the Rego
   * sees which endpoint binds which credential name, the values stay here. Replaced with the
   * policy (a policy file's reload reads them again); bundles carry no credentials.
   */
  readonly credentials: CredentialStore;

  private constructor(
    private module: WebAssembly.Module | null,
    loaded: Loaded | null,
    private readonly deterministic: boolean,
    credentials = new CredentialStore(),
  ) {
    this.credentials = credentials;
    this.current = loaded;
    this.decisions = deterministic ? new Map() : null;
  }

  /** An engine with no policy yet: every decision denies with `reason` until replaceWasm(). */
  static pending(reason: string): PolicyEngine {
    // Decisions may be kept: the engine refuses modules that call out to JavaScript, and the
    // builtins native to wasm are pure functions of input and data.
    const engine = new PolicyEngine(null, null, true);
    engine.pendingReason = reason;
    return engine;
  }

  /** Calls `observer` with every decision (its input, result and evaluation time). */
  observe(observer: (o: DecisionObservation) => void): void {
    this.observers.push(observer);
  }

  /**
   * Builds (or reuses) the wasm for the built-in Rego plus `regoDirs` and loads `policy`.
   * `credentials`: a store made earlier (its placeholders already handed to a sandbox).
   */
  static async create(policy: LoadedPolicy | PolicyData, regoDirs: string[] = [], credentials?: CredentialStore): Promise<PolicyEngine> {
    let module: WebAssembly.Module;
    try {
      module = await WebAssembly.compile(new Uint8Array(await compiledWasm(regoDirs)));
    } catch (err) {
      throw new EngineLoadError(`cannot build the policy bundle: ${(err as Error).message}`);
    }
    const data = 'data' in policy ? policy.data : policy;
    const source = 'file' in policy ? policy.file : '<data>';
    const engine = new PolicyEngine(module, instantiate(module, data, source), regoDirs.length === 0, credentials);
    if ('credentials' in policy) engine.credentials.update(policy.credentials);
    return engine;
  }

  /** Loads a compiled module as it is (from a built bundle): no `opa` needed. */
  static async fromWasm(wasm: Uint8Array, data: PolicyData, source: string, deterministic = true): Promise<PolicyEngine> {
    let module: WebAssembly.Module;
    try {
      module = await WebAssembly.compile(new Uint8Array(wasm));
    } catch (err) {
      throw new EngineLoadError(`the bundle's policy.wasm is not a usable module: ${(err as Error).message}`);
    }
    return new PolicyEngine(module, instantiate(module, data, source), deterministic);
  }

  static async fromFile(file: string, regoDirs: string[] = []): Promise<PolicyEngine> {
    return PolicyEngine.create(await loadPolicyFile(file), regoDirs);
  }

  get data(): PolicyData {
    return this.current?.data ?? NO_POLICY;
  }

  get source(): string {
    return this.current?.source ?? '<none>';
  }

  get ready(): boolean {
    return this.current !== null;
  }

  /** Swaps in a new policy atomically. Throws (and keeps the old policy) when it cannot load. */
  replace(policy: LoadedPolicy): void {
    if (!this.module) throw new EngineLoadError('this engine takes its policy from bundles, not from a policy file');
    this.swapIn(this.module, instantiate(this.module, policy.data, policy.file));
    // A policy assembled by hand (not by the loader) may come without credentials.
    this.credentials.update(policy.credentials ?? []);
  }

  /** Swaps in a new compiled module with its data (a new bundle revision), atomically. */
  async replaceWasm(wasm: Uint8Array, data: PolicyData, source: string): Promise<void> {
    let module: WebAssembly.Module;
    try {
      module = await WebAssembly.compile(new Uint8Array(wasm));
    } catch (err) {
      throw new EngineLoadError(`the bundle's policy.wasm is not a usable module: ${(err as Error).message}`);
    }
    this.swapIn(module, instantiate(module, data, source));
  }

  private swapIn(module: WebAssembly.Module, next: Loaded): void {
    const probe = this.evaluateWith(next, {
      exec: { path: '<unresolved>', ancestors: [] },
      network: { host: 'probe.invalid', port: 1 },
    });
    if (probe.reason.startsWith('policy evaluation failed')) throw new EngineLoadError(probe.reason);
    this.module = module;
    this.current = next;
    this.decisions = this.deterministic ? new Map() : null;
  }

  async reloadFile(file: string): Promise<void> {
    this.replace(await loadPolicyFile(file));
  }

  decide(input: DecisionInput): Decision {
    if (this.observers.length === 0) return this.decideOnly(input);
    const started = process.hrtime.bigint();
    const result = this.decideOnly(input);
    const evalNs = Number(process.hrtime.bigint() - started);
    for (const observer of this.observers) observer({ input, result, evalNs });
    return result;
  }

  private decideOnly(input: DecisionInput): Decision {
    if (!this.current) return { allow: false, decision: 'deny', reason: this.pendingReason, policy: null };
    if (!this.decisions) return this.evaluateWith(this.current, input);
    const key = JSON.stringify(input);
    const kept = this.decisions.get(key);
    if (kept) return { ...kept };
    const decision = this.evaluateWith(this.current, input);
    // An evaluation error is not kept: the next request asks again.
    if (decision.reason.startsWith('policy evaluation failed')) return decision;
    this.decisions.set(key, decision);
    if (this.decisions.size > MAX_KEPT_DECISIONS) this.decisions.delete(this.decisions.keys().next().value!);
    return { ...decision };
  }

  private evaluateWith(loaded: Loaded, input: DecisionInput): Decision {
    try {
      const result = loaded.wasm.evaluate(input, ENTRYPOINT) as Array<{ result?: Decision }>;
      const decision = result[0]?.result;
      if (!decision || typeof decision.allow !== 'boolean') return denyOnError('no decision returned');
      return decision;
    } catch (err) {
      return denyOnError((err as Error).message);
    }
  }
}
