// The layering of src/ (README, "How the code is laid out"): each folder is a stage of the data
// flow, and a module imports only from its own folder and from folders of lower layers — never
// from its own layer's other folders, never upward, never from test scaffolding. The simulated
// internet is test scaffolding too: of the sandbox, only the demo may use it.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '../src');

const LAYERS: string[][] = [
  ['generated', 'net', 'util', 'http', 'tls', 'netns', 'credentials'],
  ['policy'],
  ['engine', 'nft', 'identity', 'audit'],
  ['bundle'],
  ['proxy', 'decider'],
  ['dns'],
  ['sim'],
  ['sandbox'],
  ['cli'],
];
/** Test scaffolding inside src/: no other folder may import it, but for the exceptions below. */
const SCAFFOLDING = new Set(['sim']);
/** The demo shows the simulated internet. */
const EXCEPTIONS = new Set(['sandbox/demo.ts -> sim']);

const layerOf = new Map(LAYERS.flatMap((folders, level) => folders.map((folder) => [folder, level] as const)));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every relative import of every module: [module, the path it imports], both relative to src/. */
function imports(): Array<[string, string]> {
  return sourceFiles(SRC).flatMap((file) => {
    const text = readFileSync(file, 'utf8');
    const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
    return specifiers.map((spec) => [relative(SRC, file), normalize(relative(SRC, join(dirname(file), spec)))] as [string, string]);
  });
}

const folderOf = (path: string): string => path.split('/')[0]!;

/** The imports among `pairs` that break the layering. */
function violations(pairs: Array<[string, string]>): string[] {
  return pairs
    .filter(([from, to]) => {
      if (to.startsWith('..')) return true;
      const source = folderOf(from);
      const target = folderOf(to);
      if (source === target || EXCEPTIONS.has(`${from} -> ${target}`)) return false;
      return SCAFFOLDING.has(target) || !(layerOf.get(target)! < layerOf.get(source)!);
    })
    .map(([from, to]) => `${from} imports ${to}`);
}

describe('the layering of src/', () => {
  it('places every folder of src/ in a layer', () => {
    const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(folders.filter((folder) => !layerOf.has(folder))).toEqual([]);
  });

  it('imports only from the same folder or a lower layer, and never outside src/', () => {
    const all = imports();
    expect(all.length).toBeGreaterThan(500);
    expect(violations(all)).toEqual([]);
  });

  it('flags an upward import, one across a layer, test scaffolding, and the simulated internet outside the demo', () => {
    expect(
      violations([
        ['identity/owner.ts', 'proxy/pipeline.js'],
        ['proxy/pipeline.ts', 'decider/protocol.js'],
        ['proxy/pipeline.ts', '../test/support/ports.js'],
        ['sandbox/sandbox.ts', 'sim/internet.js'],
        ['sandbox/demo.ts', 'sim/internet.js'],
        ['proxy/pipeline.ts', 'identity/types.js'],
      ]),
    ).toEqual(['identity/owner.ts imports proxy/pipeline.js', 'proxy/pipeline.ts imports decider/protocol.js', 'proxy/pipeline.ts imports ../test/support/ports.js', 'sandbox/sandbox.ts imports sim/internet.js']);
  });
});
