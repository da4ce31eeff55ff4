// Driving the CLI in a real terminal: tmux runs it, send-keys types, and
// capture-pane reads the screen — no mocked stdin.
import { execFileSync } from 'node:child_process';
import { root } from './cli-helpers.ts';

export class Tmux {
  readonly session = `sml-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  constructor(command: string, env: Record<string, string> = {}) {
    const exports = Object.entries(env)
      .map(([k, v]) => `export ${k}='${v}';`)
      .join(' ');
    // The command's exit status is printed at the end, and the pane stays for reading.
    execFileSync('tmux', ['new-session', '-d', '-s', this.session, '-x', '120', '-y', '50', '-c', root, `${exports} ${command}; echo "EXIT=$?"; sleep 600`]);
    execFileSync('tmux', ['set-option', '-t', this.session, 'history-limit', '20000']);
  }

  screen(): string {
    return execFileSync('tmux', ['capture-pane', '-p', '-J', '-S', '-20000', '-t', this.session], { encoding: 'utf8' });
  }

  keys(...keys: string[]): void {
    execFileSync('tmux', ['send-keys', '-t', this.session, ...keys]);
  }

  async waitFor(pattern: RegExp, ms: number, count = 1): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const s = this.screen();
      if ((s.match(new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : pattern.flags + 'g')) ?? []).length >= count) return s;
      if (Date.now() > end) throw new Error(`screen never showed ${pattern} (${count}×); it shows:\n${s}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  kill(): void {
    try {
      execFileSync('tmux', ['kill-session', '-t', this.session], { stdio: 'ignore' });
    } catch {
      /* gone */
    }
  }
}
