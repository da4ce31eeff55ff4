// Process groups: every long-lived child we start (QEMU, vng, make, a host
// step, the warm VM's keeper) runs in a group of its own, so one signal
// reaches everything it started. The one place that signals and waits for them.

/** Sends `sig` to the group led by `pid`; false when the group is gone. Signal 0 only asks. */
export function signalGroup(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    return false; // ESRCH: nothing of it is left
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * SIGTERM to the group, then SIGKILL to whatever is left after `graceMs`;
 * resolves once the group is gone (or `waitMs` more have passed after the KILL).
 */
export async function stopGroup(pid: number, graceMs = 2000, waitMs = 1000): Promise<void> {
  if (!signalGroup(pid, 'SIGTERM')) return;
  const until = Date.now() + graceMs;
  while (Date.now() < until && signalGroup(pid, 0)) await sleep(50);
  if (!signalGroup(pid, 'SIGKILL')) return;
  const end = Date.now() + waitMs;
  while (Date.now() < end && signalGroup(pid, 0)) await sleep(50);
}
