// runLab's verdicts, with a fake backend (test/fake-backend.ts): no VM, each
// test answers the commands from its own script and looks at what the executor
// sent, what it reported and what it decided.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  backgroundCommand,
  fanOut,
  QUIT_BY_YOU,
  runLab,
  SKIPPED_BY_YOU,
  type LabResult,
  type Reporter,
  type RunContext,
  type StepResult,
} from '../runner/executor.ts';
import { Lab, type Step } from '../runner/lab-schema.ts';
import type { LoadedLab } from '../runner/labs.ts';
import { FAKE_PATHS, FakeBackend, type Reply } from './fake-backend.ts';

/** The checkout (test/..), worked out here so the test does not depend on where projectRoot is exported from. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLEANUP = 'ip link del sml-test-veth';

/** A lab as loadLab makes it, its spec checked by the schema; it lives outside the checkout unless `dir` says otherwise. */
function makeLab(spec: Record<string, unknown>, dir = path.join(os.tmpdir(), 'sml-executor-test', '07-sample')): LoadedLab {
  return { id: '07-sample', number: 7, slug: 'sample', dir, file: path.join(dir, 'lab.yaml'), spec: Lab.parse({ title: 'Sample', ...spec }) };
}

/** Three plain steps, a cleanup, and a script that answers each step by its command. */
const threeSteps = (extra: Record<string, unknown> = {}) =>
  makeLab({
    cleanup: CLEANUP,
    steps: [
      { title: 'one', run: 'step-one' },
      { title: 'two', run: 'step-two', expect: { stdout: 'ready' } },
      { title: 'three', run: 'step-three' },
    ],
    ...extra,
  });

const byCommand =
  (replies: Record<string, Reply>) =>
  (command: string): Reply | undefined =>
    replies[command];

/** A backend for threeSteps(): every step passes (step two prints its "ready") unless `replies` says otherwise. */
const fake = (replies: Record<string, Reply> = {}) => new FakeBackend(byCommand({ 'step-two': { stdout: 'ready\n' }, ...replies }));

/** A reporter that writes down what it hears. */
function recorder() {
  const events: string[] = [];
  const output: [string, string][] = [];
  const ends: StepResult[] = [];
  const rec: Reporter = {
    stepStart: (_l, s, i, n) => void events.push(`start ${s.title} ${i + 1}/${n}`),
    stepRun: (_l, s) => void events.push(`run ${s.title}`),
    stepOutput: (chunk, stream) => void output.push([stream, chunk]),
    stepEnd: (_l, s, r) => {
      events.push(`end ${s.title} ${r.status}`);
      ends.push(r);
    },
  };
  return { reporter: fanOut([rec]), events, output, ends };
}

const CTX: RunContext = { kernelRelease: '6.12.0-test' };

/** The steps' commands exec got: everything but the first (setup) and, when there is one, the teardown. */
const isSetup = (c: string) => c.includes('mkdir -p "$STATE" "$PIN"');
const isTeardown = (c: string) => c.startsWith('for f in "$STATE"/*.bgpid') && c.includes('rm -rf "$STATE" "$PIN"');
const stepCommands = (b: FakeBackend) => b.commands.filter((c) => !isSetup(c) && !isTeardown(c));

const summary = (r: LabResult) => r.steps.map((s) => `${s.title}: ${s.status}${s.reason ? ` (${s.reason})` : ''}`);

afterEach(() => {
  vi.useRealTimers();
});

describe('runLab', () => {
  it('passes a lab whose steps all pass, running each in order between setup and teardown', async () => {
    const b = fake({ 'step-one': { stdout: ['hel', 'lo\n'] }, 'step-two': { stdout: 'ready\n', stderr: 'note\n' } });
    const { reporter, events, output } = recorder();
    const r = await runLab(threeSteps(), b, reporter, CTX);

    expect(r.status).toBe('passed');
    expect(r.reason).toBeUndefined();
    expect(summary(r)).toEqual(['one: passed', 'two: passed', 'three: passed']);
    expect(b.commands).toHaveLength(5);
    expect(isSetup(b.commands[0])).toBe(true);
    expect(b.commands.slice(1, 4)).toEqual(['step-one', 'step-two', 'step-three']);
    expect(isTeardown(b.commands[4])).toBe(true);
    // Each step is checked (exit 0 by default; step two's stdout) and keeps what it printed.
    expect(r.steps[0].checks).toEqual([{ name: 'exit code', ok: true, expected: '0', got: '0' }]);
    expect(r.steps[1].checks.map((c) => `${c.name}: ${c.ok}`)).toEqual(['exit code: true', 'stdout contains: true']);
    expect(r.steps[0].exec?.stdout).toBe('hello\n');
    expect(r.steps[1].command).toBe('step-two');
    // The output reaches the reporter as it comes, with its stream.
    expect(output).toEqual([
      ['stdout', 'hel'],
      ['stdout', 'lo\n'],
      ['stdout', 'ready\n'],
      ['stderr', 'note\n'],
    ]);
    expect(events).toEqual(['start one 1/3', 'run one', 'end one passed', 'start two 2/3', 'run two', 'end two passed', 'start three 3/3', 'run three', 'end three passed']);
  });

  it('fails the lab at the first failing step, with what was expected and what came, and skips the rest', async () => {
    const b = fake({ 'step-two': { stdout: 'still starting\n' } });
    const { reporter, events } = recorder();
    const r = await runLab(threeSteps(), b, reporter, CTX);

    expect(r.status).toBe('failed');
    expect(summary(r)).toEqual(['one: passed', 'two: failed', 'three: skipped (an earlier step failed)']);
    expect(r.steps[1].checks).toEqual([
      { name: 'exit code', ok: true, expected: '0', got: '0' },
      { name: 'stdout contains', ok: false, expected: 'ready', got: 'still starting' },
    ]);
    expect(r.steps[2].checks).toEqual([]);
    // Step three never ran, and the reporter heard nothing of it.
    expect(stepCommands(b)).toEqual(['step-one', 'step-two']);
    expect(events.some((e) => e.includes('three'))).toBe(false);
    // The teardown still runs, last.
    expect(isTeardown(b.commands.at(-1)!)).toBe(true);
    expect(b.commands.at(-1)).toContain(CLEANUP);
  });

  describe('checks decide the verdict', () => {
    const one = (expectSpec: Record<string, unknown> | undefined, reply: Reply) => async () => {
      const b = new FakeBackend(byCommand({ probe: reply }));
      const r = await runLab(makeLab({ steps: [{ title: 'probe', run: 'probe', expect: expectSpec }] }), b, recorder().reporter, CTX);
      return r;
    };

    it('an unexpected exit code fails the step', async () => {
      const r = await one(undefined, { code: 3 })();
      expect(r.status).toBe('failed');
      expect(r.steps[0].checks).toEqual([{ name: 'exit code', ok: false, expected: '0', got: '3' }]);
    });

    it('an expected non-zero exit passes the step', async () => {
      const r = await one({ exit: 'nonzero' }, { code: 1 })();
      expect(r.status).toBe('passed');
      expect(r.steps[0].checks).toEqual([{ name: 'exit code', ok: true, expected: 'non-zero (failure)', got: '1' }]);
    });

    it('errno: a failure that prints the error passes, a success fails', async () => {
      const good = await one({ errno: 'EACCES' }, { code: 255, stderr: 'Error: Permission denied\n' })();
      expect(good.status).toBe('passed');
      expect(good.steps[0].checks.map((c) => `${c.name}: ${c.ok}`)).toEqual(['exit code: true', 'fails with EACCES: true']);

      const bad = await one({ errno: 'EACCES' }, { code: 0, stdout: 'ok\n' })();
      expect(bad.status).toBe('failed');
      expect(bad.steps[0].checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['exit code', 'fails with EACCES']);
    });

    it('stdout checks read stdout only', async () => {
      const r = await one({ stdout: { contains: 'sockmap', not_contains: 'error' } }, { stdout: 'id 3 sockmap\n', stderr: 'error\n' })();
      expect(r.status).toBe('passed');
      const r2 = await one({ stdout: { equals: 'a' } }, { stdout: 'b\n' })();
      expect(r2.status).toBe('failed');
      expect(r2.steps[0].checks.at(-1)).toEqual({ name: 'stdout equals', ok: false, expected: 'a', got: 'b' });
    });
  });

  describe('needs', () => {
    it('skips a lab on a kernel older than it needs, without touching the machine', async () => {
      const b = fake();
      const { reporter, events } = recorder();
      const r = await runLab(threeSteps({ needs: { kernel: '6.13' } }), b, reporter, CTX);
      const why = 'needs kernel 6.13 or newer; this one is 6.12.0-test';
      expect(r.status).toBe('skipped');
      expect(r.reason).toBe(why);
      expect(r.steps.map((s) => [s.status, s.reason])).toEqual([
        ['skipped', why],
        ['skipped', why],
        ['skipped', why],
      ]);
      expect(b.calls).toEqual([]);
      expect(events).toEqual([]);
    });

    it('runs a lab on a kernel as new as it needs', async () => {
      const b = fake();
      const r = await runLab(threeSteps({ needs: { kernel: '6.12' } }), b, recorder().reporter, CTX);
      expect(r.status).toBe('passed');
    });

    it('skips a lab whose kernel config lacks an option it needs', async () => {
      const b = new FakeBackend();
      const kernelConfig = new Map([
        ['BPF_SYSCALL', 'y'],
        ['NET_SOCK_MSG', 'n'],
      ]);
      const r = await runLab(threeSteps({ needs: { config: ['BPF_SYSCALL', 'NET_SOCK_MSG', 'CGROUP_BPF'] } }), b, recorder().reporter, { ...CTX, kernelConfig });
      expect(r.status).toBe('skipped');
      expect(r.reason).toBe('kernel 6.12.0-test lacks CONFIG_NET_SOCK_MSG, CONFIG_CGROUP_BPF');
      expect(r.steps.every((s) => s.status === 'skipped' && s.reason === r.reason)).toBe(true);
      expect(b.calls).toEqual([]);
    });

    it('runs a lab that needs config options when the config is unknown', async () => {
      const b = fake();
      const r = await runLab(threeSteps({ needs: { config: ['NET_SOCK_MSG'] } }), b, recorder().reporter, CTX);
      expect(r.status).toBe('passed');
      expect(stepCommands(b)).toEqual(['step-one', 'step-two', 'step-three']);
    });

    it("skips one step for its own needs and runs the others; the lab still passes", async () => {
      const b = fake({ 'step-two': { stdout: 'ready' } });
      const { reporter, events } = recorder();
      const lab = makeLab({
        steps: [
          { title: 'old', run: 'step-one' },
          { title: 'new', run: 'step-new', needs: { kernel: '7.0' } },
          { title: 'opt', run: 'step-opt', needs: { config: ['BPF_LSM'] } },
          { title: 'last', run: 'step-two' },
        ],
      });
      const r = await runLab(lab, b, reporter, { ...CTX, kernelConfig: new Map([['BPF_SYSCALL', 'y']]) });
      expect(r.status).toBe('passed');
      expect(summary(r)).toEqual([
        'old: passed',
        'new: skipped (needs kernel 7.0 or newer; this one is 6.12.0-test)',
        'opt: skipped (kernel 6.12.0-test lacks CONFIG_BPF_LSM)',
        'last: passed',
      ]);
      expect(stepCommands(b)).toEqual(['step-one', 'step-two']);
      // The skipped step is reported (start and end) but never run.
      expect(events.slice(3, 5)).toEqual(['start new 2/4', 'end new skipped']);
      expect(events).not.toContain('run new');
    });
  });

  describe('the learner choosing (--step)', () => {
    it("'skip' skips that step only: the lab is skipped by you, not passed", async () => {
      const b = fake();
      const asked: string[] = [];
      const { reporter, events } = recorder();
      const r = await runLab(threeSteps(), b, reporter, {
        ...CTX,
        beforeStep: async (_lab, step: Step) => {
          asked.push(step.title);
          return step.title === 'one' ? 'skip' : 'run';
        },
      });
      expect(asked).toEqual(['one', 'two', 'three']);
      expect(r.status).toBe('skipped');
      expect(r.reason).toBe(SKIPPED_BY_YOU);
      expect(r.steps[0]).toMatchObject({ status: 'skipped', reason: SKIPPED_BY_YOU });
      expect(stepCommands(b)).toEqual(['step-two', 'step-three']);
      // Asked after the step is shown (stepStart), and the skipped one never "runs".
      expect(events.slice(0, 2)).toEqual(['start one 1/3', 'end one skipped']);
      expect(isTeardown(b.commands.at(-1)!)).toBe(true);
    });

    it("a failure after a 'skip' still fails the lab", async () => {
      const b = fake({ 'step-three': { code: 1 } });
      const r = await runLab(threeSteps(), b, recorder().reporter, {
        ...CTX,
        beforeStep: async (_l, step) => (step.title === 'two' ? 'skip' : 'run'),
      });
      expect(r.status).toBe('failed');
      expect(r.reason).toBeUndefined();
    });

    it("'quit' ends the lab there: the rest is skipped as quit, and the teardown runs", async () => {
      const b = fake();
      const asked: string[] = [];
      const r = await runLab(threeSteps(), b, recorder().reporter, {
        ...CTX,
        beforeStep: async (_l, step) => {
          asked.push(step.title);
          return step.title === 'two' ? 'quit' : 'run';
        },
      });
      expect(r.status).toBe('skipped');
      expect(r.reason).toBe(QUIT_BY_YOU);
      expect(summary(r)).toEqual(['one: passed', `two: skipped (${QUIT_BY_YOU})`, `three: skipped (${QUIT_BY_YOU})`]);
      expect(asked).toEqual(['one', 'two']);
      expect(stepCommands(b)).toEqual(['step-one']);
      expect(isTeardown(b.commands.at(-1)!)).toBe(true);
    });
  });

  it('kills a step at its timeout × timeoutScale and fails it as not finished in time', async () => {
    const b = fake({ 'step-two': { hang: true } });
    const lab = threeSteps();
    lab.spec.steps[1].timeout = 0.05;
    const t0 = Date.now();
    const r = await runLab(lab, b, recorder().reporter, { ...CTX, timeoutScale: 2 });

    const stepCall = (cmd: string) => b.calls.find((c) => c.command === cmd)!;
    expect(stepCall('step-two').timeoutMs).toBe(100); // 0.05 s × 2 × 1000
    expect(stepCall('step-one').timeoutMs).toBe(120_000); // the default 60 s × 2
    expect(stepCall('step-two').outcome).toBe('timeout');
    expect(r.status).toBe('failed');
    expect(r.steps[1].status).toBe('failed');
    expect(r.steps[1].checks).toEqual([expect.objectContaining({ name: 'finished in time', ok: false })]);
    // A timeout is not a dead machine: no "machine died" reason, and the teardown runs.
    expect(r.steps[1].reason).toBeUndefined();
    expect(r.steps[2]).toMatchObject({ status: 'skipped', reason: 'an earlier step failed' });
    expect(isTeardown(b.commands.at(-1)!)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  /** Runs threeSteps() with Ctrl-C 20 ms into step two (a killed step: no exit status). */
  async function ctrlCDuringStepTwo() {
    // A step with no exit status makes the executor ask health() for up to
    // 1.5 s (settledHealth), so the clock is faked to keep this test quick.
    vi.useFakeTimers();
    const ac = new AbortController();
    const b = new FakeBackend((command) => {
      if (command !== 'step-two') return undefined;
      setTimeout(() => ac.abort(), 20);
      return { hang: true };
    });
    const { reporter, events } = recorder();
    const running = runLab(threeSteps(), b, reporter, { ...CTX, signal: ac.signal });
    await vi.advanceTimersByTimeAsync(2000);
    return { r: await running, b, events, signal: ac.signal };
  }

  it('Ctrl-C during a step: the step fails as interrupted, the rest is not run, the teardown still runs', async () => {
    const { r, b, events, signal } = await ctrlCDuringStepTwo();
    // The step got the run's signal and was killed by it.
    expect(b.calls.find((c) => c.command === 'step-two')).toMatchObject({ outcome: 'abort', signal });
    expect(r.status).toBe('failed');
    expect(r.reason).toBe('interrupted');
    expect(r.steps[1]).toMatchObject({ status: 'failed', reason: 'interrupted', checks: [] });
    expect(r.steps[2].status).toBe('skipped');
    expect(stepCommands(b)).toEqual(['step-one', 'step-two']);
    expect(events).toContain('end two failed');
    // The teardown runs after the interrupt, with a signal of its own (not the aborted one).
    const last = b.calls.at(-1)!;
    expect(isTeardown(last.command)).toBe(true);
    expect(last.command).toContain(CLEANUP);
    expect(last.outcome).toBe('exit');
    expect(last.signal).toBeDefined();
    expect(last.signal).not.toBe(signal);
    expect(last.signal?.aborted).toBe(false);
  });

  // The interrupted step counts as failed; the steps after it were skipped by the interruption, not by it.
  it('Ctrl-C during a step: the later steps are skipped as interrupted', async () => {
    const { r } = await ctrlCDuringStepTwo();
    expect(r.steps[2]).toMatchObject({ status: 'skipped', reason: 'interrupted' });
  });

  it('Ctrl-C between steps: nothing more runs, the rest is skipped as interrupted, the lab fails', async () => {
    const ac = new AbortController();
    const b = fake();
    const { reporter: rec, events } = recorder();
    // Ctrl-C lands just as step one has ended.
    const reporter = fanOut([
      rec,
      {
        stepEnd: (_l, s) => {
          if (s.title === 'one') ac.abort();
        },
      },
    ]);
    const r = await runLab(threeSteps(), b, reporter, { ...CTX, signal: ac.signal });
    expect(summary(r)).toEqual(['one: passed', 'two: skipped (interrupted)', 'three: skipped (interrupted)']);
    expect(r.status).toBe('failed');
    expect(r.reason).toBe('interrupted');
    expect(stepCommands(b)).toEqual(['step-one']);
    expect(events.at(-1)).toBe('end one passed');
    expect(isTeardown(b.commands.at(-1)!)).toBe(true);
  });

  it('a background step is started detached and waited for; the teardown kills its process group', async () => {
    const b = new FakeBackend();
    const lab = makeLab({
      cleanup: CLEANUP,
      steps: [
        { title: 'server', run: 'socat TCP-LISTEN:8000 EXEC:cat', background: 'server', ready: 'listening', timeout: 3 },
        { title: 'client', run: 'echo hi | socat - TCP:127.0.0.1:8000' },
      ],
    });
    const r = await runLab(lab, b, recorder().reporter, CTX);
    expect(r.status).toBe('passed');

    const sent = b.commands[1];
    expect(sent).toBe(backgroundCommand({ ...lab.spec.steps[0], background: 'server' }, 3));
    // Independently of backgroundCommand: a detached start whose pid is kept, then a wait for the ready text within the timeout.
    expect(sent).toContain("setsid bash -c 'socat TCP-LISTEN:8000 EXEC:cat'");
    expect(sent).toContain('echo $! > "$STATE/server.bgpid"');
    expect(sent).toContain("grep -qF -- 'listening' \"$STATE/server.log\"");
    expect(sent).toContain('seq 30'); // 3 s in 0.1 s tries
    // The result shows the command as written, not the wrapper.
    expect(r.steps[0].command).toBe('socat TCP-LISTEN:8000 EXEC:cat');
    expect(b.commands[2]).toBe('echo hi | socat - TCP:127.0.0.1:8000');
    // The teardown kills every recorded actor's whole group (kill -- -PGID) before the lab's cleanup.
    const teardown = b.commands.at(-1)!;
    expect(teardown).toMatch(/for f in "\$STATE"\/\*\.bgpid; do .*g=\$\(<"\$f"\); kill -KILL -- "-\$g"/);
    expect(teardown.indexOf('kill -KILL')).toBeLessThan(teardown.indexOf(CLEANUP));
  });

  describe('setup and teardown', () => {
    it('first clears leftovers and makes $STATE and $PIN; last runs the cleanup and removes them (after a pass)', async () => {
      const b = fake();
      const r = await runLab(threeSteps(), b, recorder().reporter, CTX);
      expect(r.status).toBe('passed');
      const [first] = b.calls;
      const last = b.calls.at(-1)!;
      expect(b.calls).toHaveLength(5);
      // Leftovers are cleared only when there are any, with the full teardown (cleanup included).
      expect(first.command).toMatch(/^if \[ -e "\$STATE" \] \|\| \[ -e "\$PIN" \]; then\n/);
      expect(first.command).toContain(CLEANUP);
      expect(first.command.trimEnd()).toMatch(/fi\n.*\n\$bb mkdir -p "\$STATE" "\$PIN"$/);
      expect(last.command).toContain(`( ${CLEANUP}\n) >/dev/null 2>&1`);
      expect(last.command).toContain('rm -rf "$STATE" "$PIN"');
      expect(last.command.indexOf(CLEANUP)).toBeLessThan(last.command.indexOf('rm -rf "$STATE" "$PIN"'));
      expect(first.timeoutMs).toBe(30_000);
      expect(last.timeoutMs).toBe(30_000);
    });

    it('skips the teardown of the last lab on a machine stopped right after it', async () => {
      const b = fake();
      const r = await runLab(threeSteps(), b, recorder().reporter, { ...CTX, machineGoesAfter: true });
      expect(r.status).toBe('passed');
      // The set-up and the three steps; no teardown.
      expect(b.calls).toHaveLength(4);
      expect(b.calls.some((c) => c.command.includes(CLEANUP) && !isSetup(c.command))).toBe(false);
    });

    it('runs the teardown after a failed step too', async () => {
      const b = fake({ 'step-one': { code: 2 } });
      const r = await runLab(threeSteps(), b, recorder().reporter, CTX);
      expect(r.status).toBe('failed');
      expect(b.commands).toHaveLength(3);
      expect(isSetup(b.commands[0])).toBe(true);
      expect(b.commands[1]).toBe('step-one');
      expect(b.commands[2]).toContain(CLEANUP);
      expect(isTeardown(b.commands[2])).toBe(true);
    });

    it('a lab without cleanup gets no cleanup subshell', async () => {
      const b = new FakeBackend();
      await runLab(makeLab({ steps: [{ title: 'one', run: 'true' }] }), b, recorder().reporter, CTX);
      expect(b.commands.at(-1)).not.toContain('>/dev/null 2>&1\nrm');
      expect(b.commands.at(-1)).not.toMatch(/^\( /m);
    });
  });

  describe('a machine that dies', () => {
    it('a step with no exit status on a dead QEMU fails with why, at once, and no teardown is tried', async () => {
      const b = fake({ 'step-two': { die: 'QEMU exited (code 1)' } });
      const t0 = Date.now();
      const r = await runLab(threeSteps(), b, recorder().reporter, CTX);
      // health() named a reason that is not the SSH connection: no 1.5 s of polling.
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(r.status).toBe('failed');
      expect(r.steps[1]).toMatchObject({ status: 'failed', reason: 'the machine died during this step: QEMU exited (code 1)', checks: [] });
      expect(r.steps[2]).toMatchObject({ status: 'skipped', reason: 'an earlier step failed' });
      // Setup, step one, step two: nothing after the death.
      expect(b.commands).toEqual([b.commands[0], 'step-one', 'step-two']);
    });

    it('a lost SSH connection is looked at again until health() names the real cause', async () => {
      const b = fake({ 'step-one': { die: 'QEMU exited (code 1)' } });
      b.healthAnswers = ['the SSH connection was lost', 'the SSH connection was lost', 'kernel panic: Oops'];
      const t0 = Date.now();
      const r = await runLab(threeSteps(), b, recorder().reporter, CTX);
      expect(r.steps[0].reason).toBe('the machine died during this step: kernel panic: Oops');
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(b.commands).toHaveLength(2);
    });

    it('a lost SSH connection that stays the only answer is the reason after 1.5 s', async () => {
      vi.useFakeTimers();
      const b = fake({ 'step-one': { die: 'the SSH connection was lost' } });
      let done = false;
      const running = runLab(threeSteps(), b, recorder().reporter, CTX).finally(() => (done = true));
      await vi.advanceTimersByTimeAsync(1400);
      // Still asking: a lost connection is not taken as the answer before the 1.5 s are up.
      expect(done).toBe(false);
      expect(b.healthCalls).toBeGreaterThan(10);
      await vi.advanceTimersByTimeAsync(200);
      const r = await running;
      expect(r.steps[0].reason).toBe('the machine died during this step: the SSH connection was lost');
      expect(b.commands).toHaveLength(2);
    });

    it('exec throwing fails the step with the error, and the teardown still runs on a live machine', async () => {
      const b = fake({ 'step-one': { throw: new Error('the step agent exited') } });
      const { reporter, ends } = recorder();
      const r = await runLab(threeSteps(), b, reporter, CTX);
      expect(r.status).toBe('failed');
      expect(r.steps[0]).toMatchObject({ status: 'failed', reason: 'the step agent exited', checks: [] });
      expect(ends[0]).toBe(r.steps[0]);
      expect(r.steps[1]).toMatchObject({ status: 'skipped', reason: 'an earlier step failed' });
      expect(isTeardown(b.commands.at(-1)!)).toBe(true);
      expect(b.commands).toHaveLength(3);
    });

    it('exec throwing on a machine that has died names the death, not the error', async () => {
      const b = new FakeBackend((command) => {
        if (command !== 'step-one') return undefined;
        b.deadReason = 'QEMU exited (signal SIGKILL)';
        return { throw: new Error('write EPIPE') };
      });
      const r = await runLab(threeSteps(), b, recorder().reporter, CTX);
      expect(r.steps[0].reason).toBe('the machine died during this step: QEMU exited (signal SIGKILL)');
      expect(b.commands).toHaveLength(2);
    });
  });

  describe('the environment of every step', () => {
    it('names the lab, its exercise, its state and pin folders, and puts the build bin dir first in PATH', async () => {
      const dir = path.join(ROOT, 'labs', '07-sample');
      const b = new FakeBackend();
      await runLab(makeLab({ steps: [{ title: 'one', run: 'true' }, { title: 'two', run: 'true' }] }, dir), b, recorder().reporter, CTX);
      const env = b.calls[1].env!;
      expect(env).toMatchObject({
        LAB: '/guest/project/labs/07-sample',
        EXERCISE: '/guest/project/labs/07-sample/exercise',
        STATE: '/guest/state/07-sample',
        PIN: '/sys/fs/bpf/sockmap-labs/07-sample',
        BUILD: FAKE_PATHS.build,
      });
      expect(env.PATH.split(':')[0]).toBe('/guest/build/bin');
      expect(env.PATH.split(':')).toContain('/usr/bin');
      expect(env.BPF_CFLAGS).toContain('-target bpf');
      // The same environment for setup, every step and the teardown.
      expect(b.calls).toHaveLength(4);
      for (const c of b.calls) expect(c.env).toEqual(env);
    });

    it('with ctx.solutions, $EXERCISE is the solution folder', async () => {
      const dir = path.join(ROOT, 'labs', '07-sample');
      const b = new FakeBackend();
      await runLab(makeLab({ steps: [{ title: 'one', run: 'true' }] }, dir), b, recorder().reporter, { ...CTX, solutions: true });
      expect(b.calls[1].env?.EXERCISE).toBe('/guest/project/labs/07-sample/solution');
      expect(b.calls[1].env?.LAB).toBe('/guest/project/labs/07-sample');
    });

    it('a lab outside the checkout is named by its own path', async () => {
      const b = new FakeBackend();
      const lab = makeLab({ steps: [{ title: 'one', run: 'true' }] });
      await runLab(lab, b, recorder().reporter, CTX);
      expect(b.calls[1].env?.LAB).toBe(lab.dir);
      expect(b.calls[1].env?.EXERCISE).toBe(`${lab.dir}/exercise`);
    });
  });
});
