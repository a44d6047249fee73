// A credential's value, held so that it cannot be printed by accident: JSON, string
// conversion and util.inspect (console.log, crash reports) all show a fixed mark. Only
// reveal() gives the value, and only the swap calls it.
import { inspect } from 'node:util';

const MARK = '[credential value withheld]';

export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  /** Same value, compared without revealing either. */
  equals(other: Secret): boolean {
    return this.#value === other.#value;
  }

  toString(): string {
    return MARK;
  }

  toJSON(): string {
    return MARK;
  }

  [inspect.custom](): string {
    return MARK;
  }
}
