#!/usr/bin/env -S npx tsx
// sockmap-labs command line: `npm run lab …`, `npm run kernels …`, `npm run doctor`.
// Each command builds its configuration once (core/config.ts), from its flags
// and the environment, and passes it down.
import { Command, Option } from 'commander';
import { GUEST_ARCHES } from '../core/arch.ts';
import { BACKENDS, buildConfig, flagsFrom, ROOTFS } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { EXIT } from '../core/exit.ts';
import { stopOnBrokenPipe } from '../core/signals.ts';
import { fetchDebianKernel, DEFAULT_KERNEL_PACKAGE } from '../vm/kernel-fetch.ts';
import { bootKernels, cachedKernels, describeKernel, kernelsDir } from '../vm/kernel.ts';
import { kernelChoice } from '../vm/session.ts';
import { allChecks, formatChecks } from './doctor.ts';
import { listLabs, pickNext, reset, scaffold, solution, validate } from './lab-commands.ts';
import { describeState, vmDown, vmExec, vmShell, vmStatus, vmUp } from './vm-commands.ts';
import { addMatrixCommand } from './matrix/cli.ts';
import { addImageCommand } from './image-command.ts';
import { addKitCommand } from './kit-command.ts';
import { runLabs } from './run-labs.ts';
import { runnerVersion } from './fingerprint.ts';
import { discoverLabs } from './labs.ts';
import { watchLab } from './watch.ts';
import { colorWanted, paint } from './style.ts';

const p = paint(colorWanted(process.stderr));

/** File-system errors that reach the top are still the user's input (a path): one line, exit 2, no stack trace. */
const ERRNO_WORDS: Record<string, string> = {
  EISDIR: 'is a folder',
  ENOENT: 'does not exist',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'is on a read-only file system',
  ENOTDIR: 'a part of the path is not a folder',
  ENAMETOOLONG: 'the name is too long',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  ELOOP: 'a symbolic link loop',
  EIO: 'an I/O error',
};

function asUserError(e: unknown): UserError | undefined {
  if (e instanceof UserError) return e;
  const err = e as NodeJS.ErrnoException & { input?: string; dest?: string };
  if (err && typeof err === 'object' && typeof err.code === 'string' && err.code in ERRNO_WORDS) {
    const what = err.path ? `${err.path}${err.dest ? ` → ${err.dest}` : ''}` : (err.message ?? '').split('\n')[0];
    return new UserError(`${err.syscall ? `${err.syscall} ` : ''}${what}: ${ERRNO_WORDS[err.code]} (${err.code})`, 'check the path, and that the folder exists and can be written');
  }
  if (err instanceof TypeError && err.code === 'ERR_INVALID_URL')
    return new UserError(`not a valid URL: "${err.input ?? ''}" (a host name has no spaces or "!")`, 'check --registry: a host such as ghcr.io or 127.0.0.1:5000, or a URL such as http://127.0.0.1:5000');
  return undefined;
}

function fail(e: unknown): never {
  const ue = asUserError(e);
  if (ue) e = ue;
  if (e instanceof UserError) {
    process.stderr.write(`${p.red('error:')} ${e.message}\n`);
    if (e.details) process.stderr.write(`${e.details.split('\n').map((l) => `  ${p.dim('│')} ${l}`).join('\n')}\n`);
    if (e.fix) process.stderr.write(`${p.bold('fix:')}   ${e.fix}\n`);
    process.exit(EXIT.usage);
  }
  throw e;
}

/** --rootfs: no commander default, so core/config.ts can tell "not asked" (the image, or the host root when --kernel asks for it). */
const rootfsOption = () =>
  new Option('--rootfs <what>', "the guest's root: the guest image (default; npm run image build), or the host's root shared read-only (default with --kernel, LAB_TRANSPORT=ssh or another backend)").choices(ROOTFS);
const archOption = () => new Option('--arch <arch>', "the guest's architecture (default: LAB_ARCH, else this machine's); another than this machine's runs under TCG").choices(GUEST_ARCHES);

const program = new Command('sockmap-labs')
  .description('Learn Linux eBPF SOCKMAP/SOCKHASH by doing: every lab step runs in a real kernel VM and is checked.')
  // A usage error is one line and a pointer to the help (set per command below), not the whole help scrolling it away.
  .showHelpAfterError('(see --help for the options)')
  // Bad input (an unknown option, a choice not offered) exits 2, as the README says; --help exits 0.
  // Set before any command is added: the commands inherit it.
  .exitOverride((e) => process.exit(e.exitCode === 0 ? EXIT.ok : EXIT.usage));

program
  .command('lab')
  .description('run labs in a throw-away VM (or "list" them)')
  .argument('[labs...]', 'lab numbers, names or "all"; or one of: list, next, reset [N], solution N, validate, new NAME')
  .addOption(new Option('-b, --backend <name>', 'where steps run').choices(BACKENDS).default('qemu'))
  .addOption(rootfsOption())
  .addOption(archOption())
  .option('-k, --kernel <path>', 'a guest kernel of your own (boots it on the host root, --rootfs host); repeat to run the labs on several kernels (default: the guest image\'s kernel; LAB_KERNEL names one too)', (v: string, prev: string[] = []) => [...prev, v])
  .option('-r, --reporter <name[=file]>', 'human (default), junit[=results.xml], json[=results.jsonl], markdown[=summary.md], html[=report.html] (the run as one page), github (::error annotations); repeatable', (v: string, prev: string[] = []) => [...prev, v])
  .option('-o, --output <file>', 'file for the one junit, json, markdown or html reporter')
  .option('-q, --quiet', 'skip the lab texts; show only commands, output and verdicts')
  .option('-s, --step', 'pause before each step: Enter runs it, s skips it, q quits')
  .option('-w, --watch', "check an exercise again each time you save a file in its exercise/ folder (a warm VM stays up; Ctrl-C stops)")
  .option('--solutions', "run the exercises with their reference solutions (CI does), not your files")
  .option('--apply', 'with "solution N": copy the solution over your exercise files')
  .option('--no-warm', 'boot a fresh VM even when a warm one is up')
  .option('-m, --memory <MiB>', 'guest memory (256 to 65536)', '1024')
  .option('--timeout-scale <n>', 'multiply every step timeout (default: 2 under TCG, else 1)')
  .addHelpText(
    'after',
    `
Examples:
  npm run lab 1                  run lab 01 in a fresh VM
  npm run lab all                run every lab in one VM
  npm run lab list               the labs, with your progress (✓ passed, ✗ failed, ~ skipped, – not yet)
  npm run lab next               run the first lab you have not passed
  npm run lab reset [N]          forget your progress (of lab N, or of all)
  npm run lab validate           check every lab file (file:line for each problem)
  npm run lab new udp-redirect   start a new lab (for instructors; see docs/authoring.md)
  npm run lab 2 -- --quiet       commands and verdicts only
  npm run lab 3 -- --step        pause before each step, to read and predict
  npm run lab 5 -- --watch       re-check exercise 05 on every save: only what changed since the last try
  npm run lab solution 5         the answer to lab 05's exercise, as a diff with your file
  npm run lab solution 5 -- --apply    put the answer in place
  npm run lab 1 -- --arch arm64   lab 01 in an arm64 guest (npm run image build -- --arch arm64 first)
  npm run lab 1 -- --rootfs host  lab 01 on the host's root and tools, shared read-only (kernel developers)
  npm run lab 1 -- --kernel /boot/vmlinuz-6.12.0-amd64   your own kernel (on the host's root)
  npm run lab all -- --kernel A --kernel B        every lab on two kernels, then a lab × kernel table
  npm run lab all -- --reporter junit --output results.xml
  npm run lab all -- --reporter html --output report.html   the whole run as one page
  sudo -E npm run lab 1 -- --backend host    no VM: the host kernel, inside a private netns

Report files (--reporter X=FILE, --output) are checked before anything starts: a regular file, or a new one in an
existing folder (missing folders are made only below the current folder); never a folder, device, FIFO or /proc.

Environment: LAB_KERNEL (kernel image), LAB_ARCH=amd64|arm64, LAB_ACCEL=auto|kvm|hvf|tcg, LAB_TRANSPORT=ssh|serial (host root), LAB_CACHE_DIR, LAB_STATE_HOME (progress), LAB_VM_DIR (warm VM).
Exit status: 0 all passed, 1 a step failed (lab validate: a problem found), 2 bad input or set-up, 130 interrupted (143 on SIGTERM, 141 when the output's reader went away).`,
  )
  .action(async (labs: string[], o) => {
    refuseFlagsNpmTook(labs);
    const cfg = buildConfig(flagsFrom(o));
    const { places } = cfg;
    const out = paint(colorWanted());
    const words: Record<string, number> = { validate: 0, list: 0, next: 0, reset: 1, new: 1, solution: 1 };
    if (labs[0] in words && labs.length - 1 > words[labs[0]])
      throw new UserError(
        `"lab ${labs[0]}" takes ${words[labs[0]] ? 'one argument' : 'no arguments'}, not: ${labs.slice(1 + words[labs[0]]).join(' ')}`,
        `npm run lab ${labs[0]}${labs[0] === 'reset' ? ' [N]' : labs[0] === 'new' ? ' NAME' : labs[0] === 'solution' ? ' N' : ''}`,
      );
    if (labs[0] !== 'new' && !discoverLabs(places.labsDir).length)
      throw new UserError(
        `no labs in ${places.labsDir}${process.env.LABS_DIR ? ' (LABS_DIR)' : ''}: no NN-name folder with a lab.yaml`,
        process.env.LABS_DIR ? 'unset LABS_DIR (a test hook), or point it at a folder of labs' : 'run from a full checkout of sockmap-labs (git status)',
      );
    if (o.apply && labs[0] !== 'solution') throw new UserError('--apply goes with "solution N": it copies a solution over your exercise', 'npm run lab solution 5 -- --apply');
    switch (labs[0]) {
      case 'validate':
        process.exitCode = validate(places.labsDir);
        return;
      case 'list':
        console.log(listLabs(places, out));
        return;
      case 'reset':
        console.log(reset(places, labs[1]));
        return;
      case 'new':
        console.log(scaffold(labs[1], places.labsDir));
        return;
      case 'solution':
        console.log(solution(places.labsDir, labs[1], !!o.apply));
        return;
      case 'next':
        labs = [pickNext(places)];
        console.log(out.dim(`» next unfinished lab: ${labs[0]}`));
        break;
    }
    if (labs.length === 0) throw new UserError('which lab? Name one (e.g. 1), or "all", or "list"', 'npm run lab list');
    if (o.watch && (o.kernel?.length ?? 0) > 1)
      throw new UserError(`--watch follows one exercise on one kernel, not ${o.kernel.length} (${o.kernel.join(', ')})`, `give one --kernel: npm run lab ${labs[0]} -- --watch --kernel ${o.kernel[0]}`);
    if (o.watch) {
      process.exitCode = await watchLab(cfg, labs);
      return;
    }
    process.exitCode = await runLabs(cfg, { labs, reporters: o.reporter, output: o.output, quiet: o.quiet, step: o.step });
  });

/**
 * Without "--", npm takes the lab's flags for its own config (npm_config_memory=true) and passes only their
 * values on ("npm run lab 1 --memory abc" runs lab "abc"). Say so, rather than run something else.
 */
function refuseFlagsNpmTook(labs: string[]) {
  if (!process.env.npm_lifecycle_event) return;
  const ours = ['memory', 'kernel', 'reporter', 'output', 'step', 'watch', 'solutions', 'apply', 'warm', 'backend', 'rootfs', 'arch', 'timeout_scale', 'timeout-scale'];
  const taken = ours.filter((f) => process.env[`npm_config_${f}`] !== undefined && process.env[`npm_config_${f}`] !== '');
  // "npm run lab -1": npm reads -1 as its own flag and passes nothing on.
  const number = Object.keys(process.env).find((k) => /^npm_config_\d+$/.test(k));
  if (number)
    throw new UserError(`npm took -${number.slice(11)} for itself, and lab numbers start at 1`, `npm run lab list   (then, e.g.: npm run lab ${number.slice(11)})`);
  // --quiet is npm's too (its log level): the lab is not quiet, so say how to make it so.
  if (process.env.npm_config_loglevel === 'warn' && !labs.includes('--quiet'))
    process.stderr.write('note: npm took --quiet for itself; for the lab\'s quiet mode put -- before it: npm run lab 1 -- --quiet\n');
  if (taken.length)
    throw new UserError(
      `npm took --${taken[0].replace('_', '-')} for itself (options after "npm run lab" need "--" before them)`,
      `npm run lab ${labs.filter((l) => !/^(true|false)$/.test(l)).slice(0, 1).join(' ') || '1'} -- --${taken[0].replace('_', '-')} …`,
    );
}

const kernels = program.command('kernels').description('list guest kernels, or fetch one into the cache');
kernels
  .command('list', { isDefault: true })
  .description('list the kernels the runner can boot, the one it would pick first')
  .action(() => {
    const cfg = buildConfig();
    const chosen = kernelChoice(cfg, cfg.machine.kernels[0]).kernel?.image;
    const rows = [...cachedKernels(kernelsDir(cfg.places.cacheDir)).map((k) => ['cache', k]), ...bootKernels().map((k) => ['/boot', k])];
    if (!rows.length) throw new UserError('no kernels found', 'npm run kernels -- fetch');
    for (const [src, img] of rows) {
      const k = describeKernel(img, 'cache');
      console.log(`${img === chosen ? '*' : ' '} ${k.release.padEnd(28)} ${src.padEnd(6)} ${img}`);
    }
  });
kernels
  .command('fetch')
  .description('download a Debian kernel package into the cache (no root, /boot untouched)')
  .argument('[package]', 'Debian kernel image package', DEFAULT_KERNEL_PACKAGE)
  .addHelpText('after', `\nExamples:\n  npm run kernels -- fetch\n  npm run kernels -- fetch linux-image-6.1.0-27-amd64`)
  .action(async (pkg: string) => {
    const k = await fetchDebianKernel(buildConfig().places.cacheDir, pkg, (s) => console.log(s));
    console.log(`kernel ${k.release} ready: ${k.image}`);
  });

const vm = program.command('vm').description('a warm VM that stays up between runs: up, down, status, exec');
vm.command('up')
  .description('boot a VM that stays up; lab runs then attach to it instead of booting')
  .addOption(new Option('-b, --backend <name>', 'the warm VM is a qemu VM; vng and host are refused, with the reason').choices(BACKENDS).default('qemu'))
  .addOption(rootfsOption())
  .addOption(archOption())
  .option('-k, --kernel <path>', 'guest kernel image')
  .option('-m, --memory <MiB>', 'guest memory (256 to 65536)', '1024')
  .action(async (o) => {
    const s = await vmUp(buildConfig(flagsFrom(o)));
    console.log(describeState(s));
  });
vm.command('down')
  .description('stop the warm VM and remove its keys and state')
  .action(async () => {
    const s = await vmDown(buildConfig());
    console.log(s ? `stopped the warm VM (qemu pid ${s.pid})` : 'no warm VM was up');
  });
vm.command('status', { isDefault: true })
  .description('is a warm VM up, and how to reach it (exit status 3 when none is)')
  .action(() => {
    const s = vmStatus(buildConfig());
    console.log(s ? describeState(s) : 'no warm VM is up (start one with: npm run vm -- up)');
    process.exitCode = s ? 0 : 3;
  });
vm.command('exec')
  .description('run one command in the warm VM, as root')
  .argument('<command...>', 'the command (put -- before it)')
  .addHelpText('after', '\nExample:\n  npm run vm -- exec -- bpftool map list')
  .action(async (words: string[]) => {
    process.exitCode = await vmExec(buildConfig(), words.join(' '));
  });

program
  .command('shell')
  .description('an interactive root shell in the warm VM (try bpftool by hand)')
  .addHelpText('after', '\nStart the VM first: npm run vm -- up. Leave the shell with exit or Ctrl-D.')
  .action(async () => {
    process.exitCode = await vmShell(buildConfig());
  });

addMatrixCommand(program);
addImageCommand(program);
addKitCommand(program);

program
  .command('doctor')
  .description('check everything the labs need, with the exact fix for each miss')
  .option('-k, --kernel <path>', 'check this guest kernel instead of the default one')
  .addOption(rootfsOption())
  .addOption(archOption())
  .addOption(new Option('-b, --backend <name>', 'check for this backend: vng adds virtme-ng and what its guest takes from the host; host checks the host kernel the steps would run on').choices(BACKENDS).default('qemu'))
  .addHelpText('after', '\nExit status: 0 when nothing is missing (warnings allowed), 1 otherwise.')
  .action(async (o) => {
    const out = paint(colorWanted());
    const checks = await allChecks(buildConfig(flagsFrom(o)));
    console.log(formatChecks(checks, out));
    const failed = checks.filter((c) => c.level === 'fail').length;
    const warned = checks.filter((c) => c.level === 'warn').length;
    console.log(`\n${checks.length - failed - warned} ok, ${warned} warning${warned === 1 ? '' : 's'}, ${failed} missing`);
    process.exitCode = failed ? 1 : 0;
  });

/** Each command's usage errors point to its own help: "npm run vm -- up --help". */
function pointToHelp(cmd: Command, words: string[]) {
  const [script, ...rest] = words;
  const help = `npm run ${script} -- ${[...rest, '--help'].join(' ')}`;
  cmd.showHelpAfterError(`(see ${help})`);
  const subs = cmd.commands;
  const fallback = subs.find((c) => (cmd as unknown as { _defaultCommandName?: string })._defaultCommandName === c.name());
  // A word that is no subcommand would reach the default one ("too many arguments for 'status'"): name it instead.
  if (subs.length && fallback)
    cmd.hook('preSubcommand', (parent) => {
      const first = parent.args[0];
      if (first !== undefined && !first.startsWith('-') && !subs.some((c) => c.name() === first || c.aliases().includes(first)))
        throw new UserError(`unknown ${script} command "${first}": use ${subs.map((c) => c.name()).join(', ')}`, `${help}`);
    });
  for (const c of subs) pointToHelp(c, [...words, c.name()]);
}
for (const c of program.commands) {
  pointToHelp(c, [c.name()]);
  c.version(runnerVersion(), '-V, --version', 'print the version (and the checkout\'s commit)');
}

stopOnBrokenPipe();
program.parseAsync(process.argv).catch(fail);
