// `--step`: before each step, wait for one key: Enter runs it, s skips it,
// q (or Ctrl-C) quits. Gives a learner time to read and predict the outcome.
import readline from 'node:readline';

type StepChoice = 'run' | 'skip' | 'quit';

export function askStep(input: NodeJS.ReadStream = process.stdin, out: NodeJS.WritableStream = process.stdout): Promise<StepChoice> {
  out.write('  [Enter] run   [s] skip   [q] quit › ');
  return new Promise((resolve) => {
    readline.emitKeypressEvents(input);
    const wasRaw = input.isRaw;
    input.setRawMode(true);
    input.resume();
    const onKey = (_: string, key: readline.Key | undefined) => {
      if (!key) return;
      const choice: StepChoice | undefined =
        key.name === 'return' || key.name === 'enter' ? 'run' : key.name === 's' ? 'skip' : key.name === 'q' || (key.ctrl && key.name === 'c') ? 'quit' : undefined;
      if (!choice) return;
      input.off('keypress', onKey);
      input.setRawMode(wasRaw);
      input.pause();
      out.write(`${choice}\n`);
      resolve(choice);
    };
    input.on('keypress', onKey);
  });
}
