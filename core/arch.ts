// Guest architectures, by Debian's names (the image's packages are Debian's).

export const GUEST_ARCHES = ['amd64', 'arm64'] as const;
export type GuestArch = (typeof GUEST_ARCHES)[number];

/** The guest architecture matching this machine, if it is one we make guests for. */
export function hostArch(): GuestArch | undefined {
  return process.arch === 'x64' ? 'amd64' : process.arch === 'arm64' ? 'arm64' : undefined;
}
