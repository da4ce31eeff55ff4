// The serial transport end to end: today's VM (the host's root over 9p) with
// no network and no sshd, the step agent on a virtio-serial port, the shell
// on a virtio console. One VM for the file, booted to stay up (as `vm up`
// does), so that it can be attached to as a warm VM afterwards.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../../core/config.ts';
import { projectRoot } from '../../core/paths.ts';
import { fanOut, runLab } from '../../runner/executor.ts';
import { discoverLabs, loadLab, selectLabs } from '../../runner/labs.ts';
import { chooseAccel } from '../../vm/accel.ts';
import { buildGuestPrograms } from '../../vm/build.ts';
import { ensureInitramfs } from '../../vm/initramfs.ts';
import { vmName } from '../../vm/qemu-args.ts';
import { QemuBackend } from '../../vm/qemu.ts';
import { openShell } from '../../vm/serial.ts';
import { frame } from '../../vm/step-agent.ts';
import { kernelChoice } from '../../vm/session.ts';
import { AttachedBackend, WarmStore, type WarmState } from '../../vm/warm.ts';
import { qemuPids } from './cli-helpers.ts';

const tag = `serial${process.pid}`;
const warmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-serial-test-'));
const store = new WarmStore(warmDir);
let vm: QemuBackend;
let kernelRelease = '';
let timeoutScale = 1;

/** In the guest: is the process whose pid is in `file` gone (a zombie counts as gone)? Waits up to 3 s. */
const goneInGuest = (file: string) =>
  `p=$(<${file}); for _ in {1..30}; do s=$(ps -o stat= -p "$p"); [ -z "$s" ] || [ "\${s#Z}" != "$s" ] && { echo gone; exit; }; sleep 0.1; done; echo alive`;

beforeAll(async () => {
  const cfg = buildConfig();
  const kernel = kernelChoice(cfg).kernel!;
  await buildGuestPrograms();
  const initrd = await ensureInitramfs(kernel, cfg.places.cacheDir);
  const { accel } = await chooseAccel(kernel, initrd.path, cfg.machine.accel, cfg.places.cacheDir);
  timeoutScale = accel === 'tcg' ? 2 : 1;
  vm = new QemuBackend({
    kernel,
    initramfs: initrd.path,
    accel,
    memoryMb: cfg.machine.memoryMb,
    cpus: cfg.machine.cpus,
    bootTimeoutMs: 180_000,
    name: vmName(tag),
    persistent: true,
    transport: 'serial',
  });
  const t = Date.now();
  const info = await vm.start();
  kernelRelease = info.kernelRelease;
  console.log(`serial transport: QEMU start to the agent's hello ${vm.timings.ready} ms, start() ${Date.now() - t} ms (${accel})`);
}, 240_000);

afterAll(async () => {
  if (store.read()) await store.stop();
  else await vm?.stop();
  fs.rmSync(warmDir, { recursive: true, force: true });
  expect(qemuPids(tag)).toEqual([]);
}, 60_000);

describe('a VM on the serial transport', () => {
  it('runs lab 01', async () => {
    const lab = loadLab(selectLabs(discoverLabs(path.join(projectRoot, 'labs')), ['1'])[0]);
    const r = await runLab(lab, vm, fanOut([]), { kernelRelease, timeoutScale });
    expect(r.steps.map((s) => `${s.title}: ${s.status}`)).toEqual(r.steps.map((s) => `${s.title}: passed`));
    expect(r.status).toBe('passed');
  }, 180_000);

  it('has no sshd, no network device, and no -netdev on the QEMU command line', async () => {
    const r = await vm.exec('pgrep -x sshd; echo "sshd: $?"; ls /sys/class/net', { timeoutMs: 30_000 });
    expect(r.stdout).toBe('sshd: 1\nlo\n');
    const argv = fs.readFileSync(`/proc/${vm.handle!.pid}/cmdline`, 'utf8').split('\0');
    expect(argv).not.toContain('-netdev');
    expect(argv.some((a) => /hostfwd|virtio-net/.test(a))).toBe(false);
    expect(argv).toContain(`virtserialport,chardev=agent,name=sockmap-labs.agent`);
    // No keys were made; the sockets sit in the VM's own 0700 folder.
    const { vmDir, agentSocket, shellSocket, port, clientKey } = vm.handle!;
    expect([port, clientKey]).toEqual([undefined, undefined]);
    expect(fs.statSync(vmDir).mode & 0o777).toBe(0o700);
    expect(path.dirname(agentSocket!)).toBe(vmDir);
    expect(fs.statSync(shellSocket!).isSocket()).toBe(true);
    expect(fs.readdirSync(vmDir).filter((f) => /id_|key/.test(f))).toEqual([]);
  }, 60_000);

  it("a step's timeout and an abort kill the step's whole group", async () => {
    const t = Date.now();
    const timedOut = await vm.exec(`sleep 60 & echo $! > /tmp/t.pid; trap '' TERM; wait`, { timeoutMs: 2000 });
    expect(timedOut).toMatchObject({ code: null, timedOut: true });
    expect(Date.now() - t).toBeLessThan(6000);
    expect((await vm.exec(goneInGuest('/tmp/t.pid'), { timeoutMs: 30_000 })).stdout).toBe('gone\n');

    const ac = new AbortController();
    const aborted = vm.exec('sleep 60 & echo $! > /tmp/a.pid; wait', { signal: ac.signal });
    for (let i = 0; i < 100 && (await vm.exec('test -s /tmp/a.pid')).code !== 0; i++);
    await new Promise((r) => setTimeout(r, 500));
    ac.abort();
    expect((await aborted).code).toBeNull();
    expect((await vm.exec(goneInGuest('/tmp/a.pid'), { timeoutMs: 30_000 })).stdout).toBe('gone\n');
    expect((await vm.exec('echo still here')).stdout).toBe('still here\n');
  }, 120_000);

  it('the shell: a login shell on the console, sized by the host; exit ends it with its status', async () => {
    const run = async (typed: string[], end: 'exit' | 'escape') => {
      const stdin = new PassThrough();
      const stdout = new PassThrough();
      let shown = '';
      stdout.on('data', (d) => (shown += d));
      const waitFor = async (text: string, from: number) => {
        for (let i = 0; i < 300 && !shown.slice(from).includes(text); i++) await new Promise((r) => setTimeout(r, 100));
        expect(shown.slice(from), `waiting for ${JSON.stringify(text)}`).toContain(text);
      };
      const done = openShell(vm.handle!.shellSocket!, { stdin, stdout });
      await waitFor('root@sockmap-lab', 0);
      for (const line of typed) {
        const from = shown.length;
        stdin.write(`${line}\r`);
        await waitFor('root@sockmap-lab', from + line.length);
      }
      stdin.write(end === 'exit' ? 'exit 3\r' : '\x1d');
      return { code: await done, shown };
    };
    await vm.exec('stty -F /dev/virtio-ports/sockmap-labs.shell rows 33 cols 111', { timeoutMs: 30_000 });
    const first = await run(['echo "[$((6 * 7))] $(tty) $(stty size)"; sleep 300 & echo $! > /tmp/shell-bg.pid'], 'escape');
    expect(first.code).toBe(0);
    expect(first.shown).toContain('[42] /dev/hvc0 33 111');
    // Ctrl-] left the shell running, with what it started; exit ends both.
    expect((await vm.exec('kill -0 $(</tmp/shell-bg.pid) && echo running')).stdout).toBe('running\n');
    const second = await run([], 'exit');
    expect(second.code).toBe(3);
    expect((await vm.exec(goneInGuest('/tmp/shell-bg.pid'), { timeoutMs: 30_000 })).stdout).toBe('gone\n');
  }, 120_000);

  it('as a warm VM: each run connects to the agent itself and gets a fresh session; what the last run left running is gone', async () => {
    const state: WarmState = { ...vm.handle!, startedAt: new Date().toISOString(), projectRoot };
    store.write(state);
    vm.detach();
    expect(state.keeperPid).toBeUndefined();

    const first = new AttachedBackend(store.read()!, store);
    let t = Date.now();
    await first.start();
    const attachMs = Date.now() - t;
    const left = first.exec('sleep 300 & echo $! > /tmp/bg.pid; wait');
    for (let i = 0; i < 50 && (await first.exec('test -s /tmp/bg.pid')).code !== 0; i++);
    await first.stop();
    expect((await left).code).toBeNull();

    // At once, as the next run would: the guest may not even have seen the first one go.
    const second = new AttachedBackend(store.read()!, store);
    t = Date.now();
    await second.start();
    const attach2Ms = Date.now() - t;
    try {
      expect((await second.exec(goneInGuest('/tmp/bg.pid'), { timeoutMs: 30_000 })).stdout).toBe('gone\n');
      // One agent serves every run; no keeper, no sshd.
      expect((await second.exec('pgrep -c -x step-agent; pgrep -c -x sshd')).stdout).toBe('1\n0\n');
      const lab = loadLab(selectLabs(discoverLabs(path.join(projectRoot, 'labs')), ['1'])[0]);
      t = Date.now();
      const r = await runLab(lab, second, fanOut([]), { kernelRelease, timeoutScale });
      expect(r.status).toBe('passed');
      console.log(`serial transport, warm VM: attach ${attachMs} ms, then ${attach2Ms} ms; lab 01 ${Date.now() - t} ms`);
    } finally {
      await second.stop();
    }
    expect(store.read()?.pid).toBe(vm.handle!.pid);
  }, 180_000);

  it('a run that dies in the middle of a flood of output (no goodbye): its step is killed, and the next run streams as before', async () => {
    // The dying run, by hand: hello, one step that writes without end, then the connection just drops.
    const sock = net.connect(store.read()!.agentSocket!);
    sock.on('error', () => {});
    let got = 0;
    sock.on('data', (d: Buffer) => (got += d.length));
    const argv = ['bash', '-c', 'echo $$ > /tmp/flood.pid; exec yes "$(printf "flood %.0s" {1..20})"'];
    sock.write(Buffer.concat([frame('H', 0, Buffer.from('dying-run')), frame('R', 1, Buffer.from(argv.map((a) => `${a}\0`).join('')))]));
    const t0 = Date.now();
    for (let i = 0; i < 300 && got < 4_000_000; i++) await new Promise((r) => setTimeout(r, 100));
    expect(got).toBeGreaterThan(4_000_000);
    const floodMs = Date.now() - t0;
    sock.destroy();

    const next = new AttachedBackend(store.read()!, store);
    const t1 = Date.now();
    await next.start();
    console.log(`serial transport: ${(got / 1e6).toFixed(1)} MB of a step's output in ${floodMs} ms; the next run attached in ${Date.now() - t1} ms`);
    try {
      expect((await next.exec(goneInGuest('/tmp/flood.pid'), { timeoutMs: 30_000 })).stdout).toBe('gone\n');
      const big = await next.exec('seq 200000', { timeoutMs: 60_000 });
      expect(big.code).toBe(0);
      expect(big.stdout).toBe(Array.from({ length: 200000 }, (_, i) => `${i + 1}\n`).join(''));
    } finally {
      await next.stop();
    }
  }, 180_000);
});
