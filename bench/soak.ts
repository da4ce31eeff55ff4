// npm run soak [-- --runs N --labs 1,2,3 --cold M --rootfs image|host]: runs
// labs again and again and, after every run, looks for what a run must not
// leave behind. The guest image by default, as `npm run lab`; --rootfs host
// soaks the host-root VM over SSH.
//
//   warm runs  one VM (`vm up`), N runs of the labs on it; after each: no new
//              pins, netns, cgroups, BPF programs or maps, lab processes,
//              step agents, sshd sessions or state in the guest; one QEMU and
//              one VM folder on the host, and one keeper (host root over SSH)
//              or none (virtio-serial)
//   cold runs  M runs that each boot their own VM; after each: no QEMU, keeper
//              or VM folder of ours left on the host, and no half-built
//              guest-build folder in the cache
// and the runner's own memory (heap after GC) across runs. Prints a table.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgsOrExit, wholeFlag } from '../core/args.ts';
import { execFileSync } from 'node:child_process';
import { buildConfig } from '../core/config.ts';
import { runLabs } from '../runner/run-labs.ts';
import { vmDown, vmExec, vmUp } from '../runner/vm-commands.ts';

const { values } = parseArgsOrExit({
  options: {
    runs: { type: 'string', default: '3' },
    labs: { type: 'string', default: '1,2,3' },
    cold: { type: 'string', default: '1' },
    rootfs: { type: 'string', default: 'image' },
    help: { type: 'boolean', short: 'h' },
  },
}, 'npm run soak -- --help');
if (values.help) {
  console.log(
    'usage: npm run soak [-- --runs N --labs 1,2,3|all --cold M --rootfs image|host]\n  N warm runs on one VM (default 3), then M cold runs (default 1), on the guest image (default) or the host root; prints runs, failures and leaks.',
  );
  process.exit(0);
}
const runs = wholeFlag('runs', values.runs, 1, 1000, 'npm run soak -- --help');
const coldRuns = wholeFlag('cold', values.cold, 0, 1000, 'npm run soak -- --help');
const labs = values.labs === 'all' ? ['all'] : values.labs.split(',');

// Our own tag and warm-VM folder, apart from anything else on the machine.
const tag = `soak${process.pid}`;
process.env.LAB_RUN_TAG = tag;
process.env.LAB_VM_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-soak-'));
process.env.LAB_STATE_HOME = process.env.LAB_VM_DIR;
/** The soak's runs are `npm run lab … -- --solutions --quiet`, warm or not. */
const warmCfg = buildConfig({ solutions: true, rootfs: values.rootfs });
const coldCfg = buildConfig({ solutions: true, warm: false, rootfs: values.rootfs });
/** The host-root VM over SSH has a keeper; a VM on virtio-serial needs none. */
const keepersWhileWarm = warmCfg.machine.transport === 'ssh' ? 1 : 0;
const logFile = path.join('build', 'logs', `soak-${process.pid}.log`);
fs.mkdirSync(path.dirname(logFile), { recursive: true });
const log = fs.createWriteStream(logFile);

const GUEST_COUNTS = [
  'echo "pins $(find /sys/fs/bpf -mindepth 1 | wc -l)"',
  'echo "netns $(ip netns list | wc -l)"',
  'echo "cgroups $(find /sys/fs/cgroup -mindepth 1 -type d | wc -l)"',
  'echo "progs $(bpftool prog show | grep -c "^[0-9]")"',
  'echo "maps $(bpftool map show | grep -c "^[0-9]")"',
  'echo "procs $(ps -e -o comm= | grep -cE "^(socklab|socat|sockperf|ncat|nc|sleep)$")"',
  'echo "state $(ls /run/sockmap-labs/state 2>/dev/null | wc -l)"',
  'echo "links $(ip -o link | wc -l)"',
  // Each run's step agent and sshd session end with its connection (this count's own are in the base).
  'echo "agents $(pgrep -c -x step-agent)"',
  'echo "sshd $(pgrep -c -x sshd)"',
].join('; ');

async function guestCounts(): Promise<Record<string, number>> {
  let text = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((c: string) => ((text += c), true)) as typeof process.stdout.write;
  try {
    await vmExec(warmCfg, GUEST_COUNTS);
  } finally {
    process.stdout.write = write;
  }
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.split(' ')[0], Number(l.split(' ')[1])]));
}

function pgrepCount(pattern: string): number {
  try {
    return execFileSync('pgrep', ['-f', pattern], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

function hostCounts() {
  const qemus = pgrepCount(`qemu-system-(x86_64|aarch64) .*-name sockmap-labs-${tag}( |$)`);
  const keepers = pgrepCount(`keeper\\.mjs .*/sockmap-labs-${tag}-vm-`);
  const vmDirs = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(`sockmap-labs-${tag}-vm-`)).length;
  // A guest build's own folder lives as long as its VM (vm/guest-build.ts).
  const builds = path.join(warmCfg.places.cacheDir, 'guest-build');
  const halfBuilt = fs.existsSync(builds) ? fs.readdirSync(builds).filter((f) => f.startsWith(`.new-`) && f.includes(`-${process.pid}-`)).length : 0;
  return { qemus, keepers, vmDirs, halfBuilt };
}

function heapMiB(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

interface Row {
  kind: string;
  run: number;
  exit: number;
  seconds: number;
  leaks: string[];
  heap: number;
}
const rows: Row[] = [];

console.log(`soak: ${runs} warm run(s) of lab ${labs.join(' ')}, then ${coldRuns} cold, on the ${warmCfg.machine.rootfs === 'image' ? 'guest image' : 'host root'}; output in ${logFile}`);
await vmUp(warmCfg);
try {
  const base = await guestCounts();
  for (let i = 1; i <= runs; i++) {
    const t = Date.now();
    const exit = await runLabs(warmCfg, { labs, quiet: true, out: log });
    const now = await guestCounts();
    const host = hostCounts();
    const leaks = Object.keys(base).filter((k) => now[k] > base[k]).map((k) => `${k} ${base[k]}→${now[k]}`);
    if (host.qemus !== 1) leaks.push(`qemus ${host.qemus}`);
    if (host.vmDirs !== 1) leaks.push(`VM folders ${host.vmDirs}`);
    if (host.keepers !== keepersWhileWarm) leaks.push(`keepers ${host.keepers}`);
    if (host.halfBuilt) leaks.push(`half-built guest-build folders ${host.halfBuilt}`);
    rows.push({ kind: 'warm', run: i, exit, seconds: (Date.now() - t) / 1000, leaks, heap: heapMiB() });
    console.log(`warm ${i}/${runs}: exit ${exit}, ${((Date.now() - t) / 1000).toFixed(1)} s, heap ${rows[rows.length - 1].heap.toFixed(1)} MiB, ${leaks.length ? `LEAKS: ${leaks.join(', ')}` : 'no leaks'}`);
  }
} finally {
  await vmDown(warmCfg);
}
for (let i = 1; i <= coldRuns; i++) {
  const t = Date.now();
  const exit = await runLabs(coldCfg, { labs, quiet: true, out: log });
  const host = hostCounts();
  // The warm VM is down by now: none of its QEMU, keeper or keys may be left either.
  const leaks = Object.entries(host)
    .filter(([, n]) => n)
    .map(([what, n]) => `${what} ${n}`);
  rows.push({ kind: 'cold', run: i, exit, seconds: (Date.now() - t) / 1000, leaks, heap: heapMiB() });
  console.log(`cold ${i}/${coldRuns}: exit ${exit}, ${((Date.now() - t) / 1000).toFixed(1)} s, heap ${rows[rows.length - 1].heap.toFixed(1)} MiB, ${leaks.length ? `LEAKS: ${leaks.join(', ')}` : 'no leaks'}`);
}
fs.rmSync(process.env.LAB_VM_DIR!, { recursive: true, force: true });
log.end();

console.log(`\n${'kind'.padEnd(5)} ${'runs'.padStart(4)} ${'failed'.padStart(6)} ${'leaky'.padStart(5)} ${'mean s'.padStart(7)} ${'heap MiB first→last'.padStart(20)}`);
for (const kind of ['warm', 'cold']) {
  const r = rows.filter((x) => x.kind === kind);
  if (!r.length) continue;
  const mean = r.reduce((a, x) => a + x.seconds, 0) / r.length;
  console.log(
    `${kind.padEnd(5)} ${String(r.length).padStart(4)} ${String(r.filter((x) => x.exit !== 0).length).padStart(6)} ${String(r.filter((x) => x.leaks.length).length).padStart(5)} ${mean.toFixed(1).padStart(7)} ${`${r[0].heap.toFixed(1)}→${r[r.length - 1].heap.toFixed(1)}`.padStart(20)}`,
  );
}
const bad = rows.filter((x) => x.exit !== 0 || x.leaks.length).length;
console.log(bad ? `\n${bad} run(s) failed or leaked` : '\nno failures, no leaks');
process.exitCode = bad ? 1 : 0;
