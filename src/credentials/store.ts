// The value store: the credentials of the policy in force, by name, with their placeholders.
// It lives beside the engine, never inside it: the Rego sees credential *names* (which endpoint
// binds which), the values stay here. Placeholders are made once per store (one proxy start)
// and kept across reloads; the values are replaced by every reload.
import { makePlaceholder } from './placeholder.js';
import type { Secret } from './secret.js';
import type { CredentialSource } from './source.js';
import type { SwapTable } from './swap.js';

/** One credential of a loaded policy. */
export interface LoadedCredential {
  name: string;
  source: CredentialSource;
  value: Secret;
}

export class CredentialStore {
  private readonly placeholders = new Map<string, string>();
  private current: { credentials: LoadedCredential[]; table: SwapTable } = { credentials: [], table: { byPlaceholder: new Map() } };

  constructor(credentials: readonly LoadedCredential[] = [], private readonly mint: (name: string) => string = makePlaceholder) {
    this.update(credentials);
  }

  /** Takes the credentials of a newly loaded policy; a name seen before keeps its placeholder. */
  update(credentials: readonly LoadedCredential[]): void {
    const byPlaceholder = new Map<string, { name: string; value: Secret }>();
    for (const credential of credentials) {
      let placeholder = this.placeholders.get(credential.name);
      if (placeholder === undefined) this.placeholders.set(credential.name, (placeholder = this.mint(credential.name)));
      byPlaceholder.set(placeholder, { name: credential.name, value: credential.value });
    }
    // One assignment: a request sees the old table or the new one, never a mix.
    this.current = { credentials: [...credentials], table: { byPlaceholder } };
  }

  /** What the swap reads: placeholder → name and value, of the policy in force. */
  get table(): SwapTable {
    return this.current.table;
  }

  get size(): number {
    return this.current.credentials.length;
  }

  /**
   * What a sandbox gets instead of the values: for each credential, the variable it is read
   * from (`env:VAR`), or its name for a file source, and its placeholder.
   */
  placeholderVariables(): Array<{ variable: string; name: string; placeholder: string }> {
    return this.current.credentials.map(({ name, source }) => ({
      variable: source.kind === 'env' ? source.variable : name,
      name,
      placeholder: this.placeholders.get(name)!,
    }));
  }

  /** Whether `text` contains the value of any credential (to keep copies of it out of a sandbox). */
  holdsValue(text: string): boolean {
    return this.current.credentials.some(({ value }) => text.includes(value.reveal()));
  }

  /** Files the values are read from (a sandbox must not read them). */
  sourceFiles(): string[] {
    return this.current.credentials.flatMap(({ source }) => (source.kind === 'file' ? [source.path] : []));
  }

  /** `VARIABLE=placeholder` lines, for a runtime to inject into its sandbox. */
  placeholderFile(): string {
    return this.placeholderVariables()
      .map(({ variable, placeholder }) => `${variable}=${placeholder}\n`)
      .join('');
  }
}
