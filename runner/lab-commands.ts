// The words `npm run lab` takes besides lab names: list, next, reset, validate.
import { UserError } from './errors.ts';
import { discoverLabs, loadLab } from './labs.ts';
import { loadProgress, nextLab, resetProgress, saveProgress } from './progress.ts';
import type { Paint } from './style.ts';
import { validateLabs } from './validate.ts';

/** `lab list`: number, name, title, what it needs, and ✓ passed / ✗ failed / – not yet. */
export function listLabs(p: Paint): string {
  const progress = loadProgress();
  const rows = discoverLabs().map((ref) => {
    const lab = loadLab(ref);
    const pr = progress[ref.id];
    const mark = !pr ? p.dim('–') : pr.status === 'passed' ? p.green('✓') : pr.status === 'failed' ? p.red('✗') : p.yellow('~');
    const needs = [lab.spec.needs?.kernel && `kernel ≥ ${lab.spec.needs.kernel}`, ...(lab.spec.needs?.config ?? []).filter((c) => !['BPF_SYSCALL', 'INET'].includes(c))]
      .filter(Boolean)
      .join(', ');
    const steps = pr && pr.status !== 'passed' ? p.dim(` (${pr.passedSteps}/${pr.totalSteps} steps last time)`) : '';
    return `${mark} ${String(ref.number).padStart(2, '0')}  ${ref.id.padEnd(24)} ${lab.spec.title}${steps}${needs ? `\n${' '.repeat(30)}${p.dim(`needs ${needs}`)}` : ''}`;
  });
  const done = discoverLabs().filter((r) => progress[r.id]?.status === 'passed').length;
  return `${rows.join('\n')}\n\n${done} of ${rows.length} labs passed. ${done < rows.length ? 'Next: npm run lab next' : 'All done!'}`;
}

/** `lab next`: the first lab not passed yet. */
export function pickNext(): string {
  const id = nextLab(discoverLabs().map((r) => r.id), loadProgress());
  if (!id) throw new UserError('every lab has passed: nothing left to run', 'npm run lab reset   (to start over)');
  return id;
}

/** `lab reset [N]`: forget progress of one lab or all. */
export function reset(which?: string): string {
  const progress = loadProgress();
  let id: string | undefined;
  if (which !== undefined) {
    const ref = discoverLabs().find((l) => (/^\d+$/.test(which) ? l.number === Number(which) : l.id === which || l.slug === which));
    if (!ref) throw new UserError(`no lab "${which}"`, 'npm run lab list');
    id = ref.id;
  }
  const n = resetProgress(progress, id);
  saveProgress(progress);
  return id ? (n ? `forgot the progress of ${id}` : `${id} had no progress yet`) : `forgot the progress of ${n} lab${n === 1 ? '' : 's'}`;
}

export function validate(): number {
  const { labs: n, problems } = validateLabs();
  for (const pr of problems) console.error(`${pr.file}:${pr.line}: ${pr.message}`);
  console.log(`${n} labs checked, ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
  return problems.length ? 1 : 0;
}
