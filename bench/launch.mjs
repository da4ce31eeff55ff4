#!/usr/bin/env node
// What `npm run bench`, `npm run soak` and `npm run bench:image` start: the
// script named first, as one esbuild bundle in build/cli/ (core/bundle.mjs),
// like the CLI. No tsx at run time: nothing (tsx's cache folder) is left in
// the temp dir, and the script starts in a tenth of the time.
//   node bench/launch.mjs bench/boot-bench.ts [its flags…]
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { freshBundle } from '../core/bundle.mjs';

const [entry, ...rest] = process.argv.slice(2);
if (!entry || !/^bench\/[\w-]+\.ts$/.test(entry)) {
  process.stderr.write('error: name the bench script, e.g. node bench/launch.mjs bench/boot-bench.ts\n');
  process.exit(2);
}
// The script's parseArgs sees its own flags only, as if it had been started directly.
process.argv = [process.argv[0], entry, ...rest];
await import(pathToFileURL(await freshBundle(path.basename(entry, '.ts'), entry)).href);
