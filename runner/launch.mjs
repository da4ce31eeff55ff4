#!/usr/bin/env node
// What `npm run lab` (and vm, shell, doctor, kernels, matrix) starts: the CLI
// in runner/cli.ts, as one esbuild bundle rebuilt whenever a source is newer
// (core/bundle.mjs). `npx tsx runner/cli.ts …` runs the sources directly, for debugging.
import { pathToFileURL } from 'node:url';
import { freshBundle } from '../core/bundle.mjs';

await import(pathToFileURL(await freshBundle('cli', 'runner/cli.ts')).href);
