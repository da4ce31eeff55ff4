// JSON lines: one object per step as it finishes, then one per lab. Easy to
// grep, to stream, and to load into anything. A lab's object carries the run's
// fingerprint (runner/fingerprint.ts) as `fingerprint`.
import fs from 'node:fs';
import path from 'node:path';
import type { LabResult, MachineInfo, Reporter, StepResult } from '../executor.ts';
import type { Step } from '../lab-schema.ts';
import type { LoadedLab } from '../labs.ts';

export class JsonLinesReporter implements Reporter {
  private machine?: MachineInfo;
  private fd: number;

  constructor(file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, 'w');
  }

  private write(o: object) {
    fs.writeSync(this.fd, JSON.stringify(o) + '\n');
  }

  machineStart(info: MachineInfo) {
    this.machine = info;
  }

  stepEnd(lab: LoadedLab, _step: Step, r: StepResult) {
    this.write({
      type: 'step',
      lab: lab.id,
      step: r.title,
      status: r.status,
      durationMs: r.durationMs,
      kernel: this.machine?.kernelRelease,
      accel: this.machine?.accel,
      exitCode: r.exec?.code ?? null,
      output: r.exec ? r.exec.stdout + r.exec.stderr : '',
      failedChecks: r.checks.filter((c) => !c.ok),
      reason: r.reason,
    });
  }

  labEnd(r: LabResult) {
    const machine = r.machine ?? this.machine;
    this.write({
      type: 'lab',
      lab: r.lab.id,
      title: r.lab.spec.title,
      status: r.status,
      durationMs: r.durationMs,
      kernel: machine?.kernelRelease,
      reason: r.reason,
      fingerprint: machine?.fingerprint,
    });
  }

  runEnd() {
    fs.closeSync(this.fd);
  }
}
