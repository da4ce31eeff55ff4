// The `matrix` command of runner/cli.ts: options and help text in one place,
// so the CLI adds it with one line: addMatrixCommand(program).
import { Command, Option } from 'commander';
import { buildConfig, flagsFrom } from '../../core/config.ts';
import { matrixCommand } from './command.ts';

const MATRIX_HELP = `
Examples:
  npm run matrix                            tables here; files build/matrix/matrix.json and .md
  npm run matrix -- --html matrix.html      the same, and one self-contained HTML page
  npm run matrix -- --json m.json --markdown summary.md
  npm run matrix -- --kernel A --kernel B   one matrix per kernel, and what changed from A to B
  npm run matrix -- --all                   every cell of the cheat-sheet comparison, not only differences

For each map (SOCKMAP, SOCKHASH), redirect mode (send to local, send to egress,
ingress to egress, ingress to local) and pair of socket kinds (TCP, UDP, UNIX
stream and dgram, VSOCK stream and seqpacket), bpf/helpers/sockmap-matrix makes
fresh sockets, sends, and records where the bytes went:
  works        the bytes reached the target, not their normal path
  ERRNO        refused: send() failed (ERRNO* at insert)
  lost         no error, and no bytes anywhere
  normal       not redirected: the bytes took their normal path
Then it tries inserts alone (those kinds, UNIX seqpacket, VSOCK dgram, TCP
listening, UDP unbound, …). Each cell is compared with the talk's cheat sheet
(data/cheatsheet.json).

Exit status: 0 measured, 1 a cell could not be measured, 2 bad input or set-up, 130 interrupted.`;

export function addMatrixCommand(program: Command): Command {
  return program
    .command('matrix')
    .description('measure which SOCKMAP redirects and inserts the guest kernel supports, and compare with the talk')
    .option('-k, --kernel <path>', 'guest kernel image; repeat for one matrix per kernel and a diff between them', (v: string, prev: string[] = []) => [...prev, v])
    .option('--html <file>', 'write the matrix as one self-contained HTML page')
    .option('--json <file>', 'write every probe, the comparison with the cheat sheet and the kernel diffs as JSON (default build/matrix/matrix.json)')
    .option('--markdown <file>', 'append the tables as markdown, e.g. to $GITHUB_STEP_SUMMARY (default: build/matrix/matrix.md, rewritten)')
    .option('-a, --all', 'list every cell of the cheat-sheet comparison, not only the differences')
    .addOption(new Option('-b, --backend <name>', 'where the probe runs').choices(['qemu', 'host']).default('qemu'))
    .option('--no-warm', 'boot a fresh VM even when a warm one is up')
    .option('-m, --memory <MiB>', 'guest memory (256 to 65536)', '1024')
    .addHelpText('after', MATRIX_HELP)
    .action(async (o) => {
      process.exitCode = await matrixCommand(buildConfig(flagsFrom(o)), { html: o.html, json: o.json, markdown: o.markdown, all: o.all });
    });
}
