// Builds what the guest runs from the checkout: the BPF programs, the lab
// helpers and the step agent (`make -C bpf`; make rebuilds only what changed).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.ts';
import { projectRoot } from '../core/paths.ts';
import { signalGroup } from '../core/process-group.ts';

const INSTALL_BUILD_TOOLS = 'sudo apt-get install -y clang llvm libbpf-dev gcc make';

export async function buildGuestPrograms(log: (s: string) => void = () => {}, signal?: AbortSignal): Promise<void> {
  if (!fs.existsSync(path.join(projectRoot, 'bpf/Makefile'))) return;
  // Plain spawn, not zx: this runs before every lab run, and loading zx costs ~0.2 s.
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const make = spawn('make', ['-s', '-C', 'bpf'], { cwd: projectRoot, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    make.stdout.on('data', (d) => (stdout += d));
    make.stderr.on('data', (d) => (stderr += d));
    // Ctrl-C kills the build too: make and the compilers it started, as one process group.
    const onAbort = () => signalGroup(make.pid!, 'SIGTERM');
    signal?.addEventListener('abort', onAbort, { once: true });
    make.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? new UserError('make is not installed', INSTALL_BUILD_TOOLS) : e));
    make.once('close', (code) => {
      signal?.removeEventListener('abort', onAbort);
      resolve({ code, stdout, stderr });
    });
  });
  signal?.throwIfAborted();
  if (r.code !== 0) {
    const missing = /(clang|bpftool|cc|gcc): (command )?not found|No such file or directory.*bpf_helpers\.h/.exec(r.stderr);
    throw new UserError(
      `building the BPF programs failed${missing ? ` (${missing[0]})` : ''}`,
      missing ? INSTALL_BUILD_TOOLS : 'make -C bpf   (to see the compiler errors)',
      r.stderr.trim().split('\n').slice(-15).join('\n'),
    );
  }
  if (r.stdout.trim()) log(r.stdout.trim());
}
