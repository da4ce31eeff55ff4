// Where things are as a guest sees them. The QEMU guest's init (vm/guest/init)
// mounts the checkout and a scratch folder at these paths; the vng and host
// backends see the checkout where it is on the host.

/** Paths as the guest sees them. */
export interface GuestPaths {
  /** The project's checkout (read-only in a VM). */
  project: string;
  /** Built BPF objects and helpers. */
  build: string;
  /** A writable scratch directory for lab state. */
  state: string;
  /** The host folder the guest sees at `build`, when it is not the checkout's build/ (a guest-image VM's, vm/guest-build.ts). */
  hostBuild?: string;
}

/** The QEMU guest's layout (see vm/guest/init). */
export const QEMU_GUEST_PATHS: GuestPaths = {
  project: '/run/sockmap-labs/project',
  build: '/run/sockmap-labs/project/build',
  state: '/run/sockmap-labs/state',
};

/** A guest-image VM: its lab programs are built in the guest into a share of their own (vm/guest-build.ts), `hostBuild` on the host. */
export const imageGuestPaths = (hostBuild: string): GuestPaths => ({ ...QEMU_GUEST_PATHS, build: '/run/sockmap-labs/build', hostBuild });

/** Paths for a guest that sees the checkout where the host has it (vng, host). */
export function sharedCheckoutPaths(project: string, state: string): GuestPaths {
  return { project, build: `${project}/build`, state };
}

/** Where a guest keeps the pid files of steps run over one SSH channel each. */
export const STEP_PID_DIR = '/run/sockmap-labs/steps';

/** Where a guest mounts its bpffs. */
export const BPFFS = '/sys/fs/bpf';

/** Where lab programs pin their maps (a lab's own folder below it). */
export const PIN_ROOT = `${BPFFS}/sockmap-labs`;

/** The step agent (vm/guest/step-agent.c), as built into build/bin (`build`: GuestPaths.build). */
export const stepAgentPath = (build: string) => `${build}/bin/step-agent`;

/** PATH for every command the runner starts in a guest: our helpers first. */
export const guestPathVar = (p: GuestPaths) => `${p.build}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
