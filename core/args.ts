// Command lines of the scripts outside the CLI (bench, soak, bench:image):
// node's parseArgs, with bad input turned into one line and exit 2, as the CLI
// does (an unknown flag, a missing value, a count that is not a whole number).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EXIT } from './exit.ts';

/** One line on stderr naming the problem and where the help is, then exit 2. */
export function usageError(message: string, help: string): never {
  process.stderr.write(`error: ${message}\n(see ${help})\n`);
  process.exit(EXIT.usage);
}

/** parseArgs, or one line and exit 2 (never a stack trace). `help` is the command that shows the usage. */
export function parseArgsOrExit<T extends ParseArgsConfig>(config: T, help: string): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    usageError((e as Error).message.replace(/\. To specify a positional argument starting with a '-'.*$/s, ''), help);
  }
}

/** A whole number from min to max given as a flag's value, or one line and exit 2. */
export function wholeFlag(name: string, value: string, min: number, max: number, help: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) usageError(`--${name} must be a whole number from ${min} to ${max}, not "${value}"`, help);
  return n;
}
