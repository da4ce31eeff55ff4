// `npm run matrix`: boot each kernel, run bpf/helpers/sockmap-matrix in it
// (every redirect mode × socket kind × socket kind, SOCKMAP and SOCKHASH,
// then inserts alone), and show what the kernel did: tables, the comparison
// with the talk's cheat sheet, and what changed between kernels. Files on
// request: --json, --markdown, --html.
import path from 'node:path';
import type { Config } from '../../core/config.ts';
import { UserError } from '../../core/errors.ts';
import { exitCodeFor } from '../../core/exit.ts';
import { guestPathVar } from '../../core/guest.ts';
import { checkOutputFile, writeOutputFile } from '../../core/output-file.ts';
import { projectRoot } from '../../core/paths.ts';
import { shqIfNeeded } from '../../core/shell.ts';
import type { Backend } from '../../vm/backend.ts';
import { onEachMachine } from '../../vm/session.ts';
import { fingerprintOf, runnerVersion } from '../fingerprint.ts';
import { renderHtmlReport } from '../html-page.ts';
import { sessionUi } from '../run-labs.ts';
import { colorWanted, paint, spinner } from '../style.ts';
import { loadCheatsheet } from './cheatsheet.ts';
import { diffAll } from './diff.ts';
import { labelMatrices, parseProbeOutput, ProbeOutputError, type Matrix } from './model.ts';
import { reportJson, reportMarkdown, terminalComparison, terminalDiff, terminalMatrix } from './render.ts';

interface MatrixOptions {
  /** Write the run as one self-contained HTML page. */
  html?: string;
  /** Write every probe, the comparison and the diffs as JSON (default: build/matrix/matrix.json). */
  json?: string;
  /** Append the tables as markdown, like the markdown reporter: fine for $GITHUB_STEP_SUMMARY (default: build/matrix/matrix.md, rewritten). */
  markdown?: string;
  /** Print every cell of the cheat-sheet comparison, not only the differences. */
  all?: boolean;
  /** Extra arguments for the probe, e.g. ['--no-attach'] or ['--mode', 'ingress-to-local']. */
  probeArgs?: string[];
  /** Where the text goes (default stdout). */
  out?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** Where the matrix goes when no file is named (build/ is not tracked). */
const DEFAULT_JSON = path.join(projectRoot, 'build/matrix/matrix.json');
const DEFAULT_MARKDOWN = path.join(projectRoot, 'build/matrix/matrix.md');

/** The probe's command line in the guest: the VSOCK loopback transport first, then the probe. */
export function probeCommand(args: string[] = []): string {
  return ['modprobe vsock_loopback 2>/dev/null', `sockmap-matrix ${args.map(shqIfNeeded).join(' ')}`.trim()].join('\n');
}

/** Unloads what modprobe loaded (a warm VM or the host keeps running after us). */
const UNLOAD_VSOCK = 'for _ in 1 2 3 4 5; do modprobe -r vsock_loopback vmw_vsock_virtio_transport_common vsock 2>/dev/null && break; sleep 0.3; done; true';

/** Runs the probe on a started backend and reads its matrix. */
async function probeOn(
  backend: Backend,
  o: { args?: string[]; signal?: AbortSignal; timeoutMs?: number; onProbe?: (count: number) => void } = {},
): Promise<{ matrix: Matrix; wallMs: number }> {
  const env = { BUILD: backend.paths.build, PATH: guestPathVar(backend.paths), LC_ALL: 'C' };
  let count = 0;
  const t0 = Date.now();
  const r = await backend.exec(probeCommand(o.args), {
    env,
    timeoutMs: o.timeoutMs ?? 600_000,
    signal: o.signal,
    onStdout: (chunk) => {
      count += chunk.split('{"probe":"').length - 1;
      o.onProbe?.(count);
    },
  });
  const wallMs = Date.now() - t0;
  if (backend.name !== 'qemu') await backend.exec(UNLOAD_VSOCK, { env, timeoutMs: 30_000 }).catch(() => {});
  if (o.signal?.aborted) throw new UserError('interrupted');
  const tail = (r.stdout + r.stderr).trim().split('\n').slice(-15).join('\n');
  if (r.timedOut) throw new UserError(`the probe did not finish in ${((o.timeoutMs ?? 600_000) / 1000).toFixed(0)} s`, undefined, tail);
  let matrix: Matrix | undefined;
  try {
    matrix = parseProbeOutput(r.stdout);
  } catch (e) {
    if (e instanceof ProbeOutputError) throw new UserError(`the probe printed something unexpected: ${e.message}`, 'make -C bpf   (is build/bin/sockmap-matrix up to date?)', tail);
    throw e;
  }
  if (r.code !== 0 || !matrix || matrix.probes === undefined)
    throw new UserError(`the probe failed (exit ${r.code})`, 'make -C bpf   (then: npm run vm -- exec -- sockmap-matrix --grid, to see it run)', tail);
  return { matrix, wallMs };
}

export async function matrixCommand(cfg: Config, o: MatrixOptions = {}): Promise<number> {
  const out = o.out ?? process.stdout;
  const tty = !!out.isTTY && !cfg.ci;
  const color = o.out ? false : colorWanted();
  const p = paint(color);
  const say = (s = '') => out.write(s + '\n');
  const notice = (s: string) => say(p.dim(`» ${s}`));
  const sheet = loadCheatsheet();
  // Every output is checked now, before a VM boots: a probe is never lost to a file that cannot be written.
  const files = {
    json: o.json !== undefined ? checkOutputFile(o.json, { what: '--json', suggest: 'matrix.json' }) : checkOutputFile(DEFAULT_JSON, { what: 'the matrix JSON', createDirs: true }),
    markdown: o.markdown !== undefined ? checkOutputFile(o.markdown, { what: '--markdown', suggest: 'matrix.md' }) : checkOutputFile(DEFAULT_MARKDOWN, { what: 'the matrix markdown', createDirs: true }),
    html: o.html !== undefined ? checkOutputFile(o.html, { what: '--html', suggest: 'matrix.html' }) : undefined,
  };

  const matrices: Matrix[] = [];
  const started = Date.now();
  const runner = runnerVersion();
  const interrupted = await onEachMachine(
    cfg,
    sessionUi({ tty, notice, what: 'the probe', out }),
    async ({ backend, info, signal }) => {
      const t0 = Date.now();
      const probing = tty ? await spinner('probing…', out) : undefined;
      if (!probing) notice('probing: every redirect mode × in socket × out socket, SOCKMAP and SOCKHASH, then inserts alone…');
      let result;
      try {
        result = await probeOn(backend, { args: o.probeArgs, signal, onProbe: (n) => probing && (probing.text = `probing… ${n} lines`) });
      } finally {
        probing?.stop();
      }
      const m: Matrix = { ...result.matrix, accel: info.accel, backend: info.backend, fingerprint: fingerprintOf(info, runner), startedAt: new Date(t0).toISOString() };
      notice(`${m.probes} probes in ${((m.totalMs ?? 0) / 1000).toFixed(1)} s in the guest (${(result.wallMs / 1000).toFixed(1)} s with the SSH round trip)`);
      matrices.push(m);
    },
  );

  const labelled = labelMatrices(matrices);
  const diffs = diffAll(labelled);
  for (const m of labelled) {
    say();
    say(terminalMatrix(m, p));
    say();
    say(terminalComparison(m, sheet, p, o.all));
  }
  for (const d of diffs) {
    say();
    say(terminalDiff(d, p));
  }
  const write = (file: string, text: string, what: string, append = false) => {
    writeOutputFile(file, text, what, { append });
    notice(`wrote ${path.relative(process.cwd(), file) || file}`);
  };
  if (labelled.length) {
    say();
    write(files.json, JSON.stringify(reportJson(labelled, diffs, sheet), null, 2) + '\n', 'the matrix JSON');
    write(files.markdown, reportMarkdown(labelled, diffs, sheet), 'the matrix markdown', o.markdown !== undefined);
    if (files.html) write(files.html, renderHtmlReport({ title: 'SOCKMAP support matrix', results: [], matrices: labelled, cheatsheet: sheet, durationMs: Date.now() - started }), 'the matrix HTML page');
  }
  if (interrupted) return exitCodeFor(interrupted);
  // A cell the probe could not set up (e.g. no VSOCK transport) is a hole in the matrix: say so in the exit status.
  const holes = labelled.flatMap((m) => m.redirect.filter((x) => x.outcome === 'error').map((x) => `${m.label}: ${x.mode} ${x.src}→${x.dst} (${x.errno})`));
  if (holes.length) {
    say(p.yellow(`${holes.length} cells could not be measured, e.g. ${holes[0]}`));
    return 1;
  }
  return 0;
}
