// Finding a program the way a shell does, plus the sbin folders a non-root
// PATH may lack (bpftool and sshd live there).
import fs from 'node:fs';
import path from 'node:path';

const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Full path of an executable file, or undefined. A name with a slash is a path already. */
export function which(bin: string, envPath = process.env.PATH ?? ''): string | undefined {
  const dirs = bin.includes('/') ? [''] : [...envPath.split(path.delimiter), ...SBIN].filter(Boolean);
  for (const d of dirs) {
    const p = d ? path.join(d, bin) : path.resolve(bin);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}
