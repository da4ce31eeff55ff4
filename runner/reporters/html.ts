// --reporter html: the whole run as one page (runner/html-page.ts), written
// on runEnd.
import path from 'node:path';
import type { LabResult, MachineInfo, Reporter } from '../executor.ts';
import { renderHtmlReport } from '../html-page.ts';
import { writeOutputFile } from '../../core/output-file.ts';
import type { Matrix } from '../matrix/model.ts';

/** --reporter html[=report.html]: the whole run as one page, written when the run ends. */
export class HtmlReporter implements Reporter {
  private machines: MachineInfo[] = [];
  private notices: string[] = [];
  private readonly started = Date.now();

  constructor(
    private readonly file: string,
    private readonly o: { title?: string; matrices?: Matrix[] } = {},
  ) {}

  notice(line: string) {
    this.notices.push(line);
  }

  machineStart(info: MachineInfo) {
    this.machines.push(info);
  }

  runEnd(results: LabResult[]) {
    writeOutputFile(
      path.resolve(this.file),
      renderHtmlReport({ results, machines: this.machines, matrices: this.o.matrices, title: this.o.title, notices: this.notices, durationMs: Date.now() - this.started }),
      'the HTML report',
    );
  }
}
