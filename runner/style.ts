// Terminal colours, only where they help: on a TTY, and never with NO_COLOR;
// and spinners, only on a terminal.

/** ora, loaded only when a spinner will be shown: it takes ~90 ms to load. */
export const loadOra = async () => (await import('ora')).default;

/** A started ora spinner. */
export async function spinner(text: string, stream: NodeJS.WritableStream = process.stdout) {
  return (await loadOra())({ text, stream: stream as NodeJS.WriteStream }).start();
}

export interface Paint {
  bold(s: string): string;
  dim(s: string): string;
  italic(s: string): string;
  underline(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

const codes: Record<keyof Paint, [number, number]> = {
  bold: [1, 22],
  dim: [2, 22],
  italic: [3, 23],
  underline: [4, 24],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
};

export function paint(enabled: boolean): Paint {
  const out = {} as Paint;
  for (const [name, [on, off]] of Object.entries(codes) as [keyof Paint, [number, number]][])
    out[name] = enabled ? (s) => `\x1b[${on}m${s}\x1b[${off}m` : (s) => s;
  return out;
}

export function colorWanted(stream: NodeJS.WriteStream = process.stdout): boolean {
  if (process.env.NO_COLOR) return false;
  if (process.env.FORCE_COLOR) return true;
  return !!stream.isTTY;
}
