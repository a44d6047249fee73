// Small helpers shared by the sub-commands. Parse errors are commander's InvalidArgumentError,
// so a bad value is a usage error (exit 2) with the option named.
import { InvalidArgumentError } from 'commander';

/** Collects a repeatable option into an array (`--ancestor A --ancestor B`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Parses `ADDR:PORT` (IPv6 as `[::1]:8080`). */
export function parseHostPort(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port < 1 || port > 65535) throw new InvalidArgumentError(`"${text}" is not ADDR:PORT (IPv6 as [::1]:PORT)`);
  return { host: (match[1] ?? match[2])!, port };
}

/** Parses a port number option. */
export function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new InvalidArgumentError(`port "${text}" must be an integer from 1 to 65535`);
  }
  return Number(text);
}
