// JSON lines: one object per step as it finishes, then one per lab. Easy to
// grep, to stream, and to load into anything. A lab's object carries the run's
// fingerprint (runner/fingerprint.ts) as `fingerprint`.
import fs from 'node:fs';
import path from 'node:path';
import type { LabResult, MachineInfo, Reporter, StepResult } from '../executor.ts';
import type { Step } from '../lab-schema.ts';
import type { LoadedLab } from '../labs.ts';
import { prepareOutputDir, writeError } from '../../core/output-file.ts';

export class JsonLinesReporter implements Reporter {
  private machine?: MachineInfo;
  private fd: number;

  private readonly file: string;

  /** Opens `file` now (it was checked by core/output-file.ts checkOutputFile), so a bad one stops the run before it starts. */
  constructor(file: string) {
    this.file = path.resolve(file);
    prepareOutputDir(this.file, 'the JSON lines report');
    try {
      this.fd = fs.openSync(this.file, 'w');
    } catch (e) {
      throw writeError(e, this.file, 'the JSON lines report');
    }
  }

  private write(o: object) {
    try {
      fs.writeSync(this.fd, JSON.stringify(o) + '\n');
    } catch (e) {
      throw writeError(e, this.file, 'the JSON lines report');
    }
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

  runEnd(results: LabResult[] = []) {
    try {
      // A lab that never ran (the machine did not come up) is an error record, so the file is never silently empty.
      for (const r of results.filter((x) => x.error)) this.write({ type: 'error', lab: r.lab.id, title: r.lab.spec.title, status: 'error', error: r.error });
      if (!results.length) this.write({ type: 'error', lab: null, status: 'error', error: 'no lab ran' });
    } finally {
      fs.closeSync(this.fd);
    }
  }
}
