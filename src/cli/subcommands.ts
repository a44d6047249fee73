// The names of the sub-commands: the program registers them, the loader keeps one code cache
// per sub-command (each runs different code).
export const SUBCOMMANDS = ['check', 'eval', 'test', 'compile', 'proxy', 'whois', 'run', 'build'] as const;

export type Subcommand = (typeof SUBCOMMANDS)[number];

export function isSubcommand(name: string | undefined): name is Subcommand {
  return (SUBCOMMANDS as readonly string[]).includes(name ?? '');
}
