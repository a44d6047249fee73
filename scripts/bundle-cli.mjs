// Bundles the command line's program (src/cli/program.ts and everything it uses, packages
// included) into one CommonJS file, dist/cli/program.cjs, which dist/cli/main.js compiles with
// V8's code cache. Node resolves, reads and links every ES module separately: for
// `portcullis run` that was over a hundred files and about a third of its start-up.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

await build({
  absWorkingDir: ROOT,
  entryPoints: ['src/cli/program.ts'],
  outfile: 'dist/cli/program.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // Modules that locate files next to themselves (the built-in Rego, .cache/bin/opa) use
  // import.meta.url; in the bundle that is the bundle's URL, which sits at the same depth.
  define: { 'import.meta.url': 'bundleUrl' },
  banner: { js: "const bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  sourcemap: 'linked',
  sourcesContent: false,
  logLevel: 'warning',
});
