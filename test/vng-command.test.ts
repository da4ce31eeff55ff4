import { describe, expect, it } from 'vitest';
import { UserError } from '../core/errors.ts';
import {
  buildVngCommand,
  checkVngHost,
  findGuestKey,
  VngBackend,
  type ConnectSsh,
  type HostLookup,
  type VngCommandOptions,
} from '../vm/vng.ts';

const base: VngCommandOptions = {
  kernel: '/home/me/.cache/sockmap-labs/kernels/6.12/boot/vmlinuz-6.12.1-amd64',
  sshPort: 10022,
  accel: 'kvm',
  memoryMb: 2048,
  cpus: 2,
  projectDir: '/home/me/sockmap-labs',
};

/** The value following `flag` in args. */
function valueOf(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

/** A host where every program and file exists except the ones named. */
function hostWithout(...missing: string[]): HostLookup {
  return {
    which: (name) => (missing.includes(name) ? undefined : `/usr/bin/${name}`),
    exists: (p) => !missing.includes(p),
  };
}

describe('buildVngCommand', () => {
  it('runs vng with the kernel image', () => {
    const { cmd, args } = buildVngCommand(base);
    expect(cmd).toBe('vng');
    expect(args).toContain(`--run=${base.kernel}`);
  });

  it('makes a relative kernel path absolute (so vng never reads it as a version tag)', () => {
    const { args } = buildVngCommand({ ...base, kernel: 'v6.6' });
    const run = args.find((a) => a.startsWith('--run='))!;
    expect(run).toBe(`--run=${process.cwd()}/v6.6`);
  });

  it('uses KVM by default and --disable-kvm for TCG', () => {
    expect(buildVngCommand({ ...base, accel: 'kvm' }).args).not.toContain('--disable-kvm');
    expect(buildVngCommand({ ...base, accel: 'tcg' }).args).toContain('--disable-kvm');
  });

  it('starts sshd on the given port, over TCP rather than vsock', () => {
    const { args } = buildVngCommand(base);
    expect(args).toContain('--ssh=10022');
    expect(args).toContain('--ssh-tcp');
    expect(buildVngCommand({ ...base, sshPort: 2345 }).args).toContain('--ssh=2345');
  });

  it('passes memory in MiB and the CPU count', () => {
    const { args } = buildVngCommand({ ...base, memoryMb: 1536, cpus: 4 });
    expect(valueOf(args, '--memory')).toBe('1536M');
    expect(valueOf(args, '--cpus')).toBe('4');
  });

  it('logs in as root, starts in the project folder, keeps the monitor off stdin', () => {
    const { args } = buildVngCommand(base);
    expect(valueOf(args, '--user')).toBe('root');
    expect(valueOf(args, '--cwd')).toBe(base.projectDir);
    expect(args).toContain('--disable-monitor');
  });

  it('never gives the guest write access to the host root', () => {
    expect(buildVngCommand(base).args).not.toContain('--rw');
    const { args } = buildVngCommand({ ...base, rwDirs: ['/tmp/out'] });
    expect(valueOf(args, '--rwdir')).toBe('/tmp/out');
  });

  it('adds the optional switches only when asked', () => {
    const plain = buildVngCommand(base).args;
    for (const flag of ['--disable-microvm', '--force-9p', '--verbose']) expect(plain).not.toContain(flag);
    const all = buildVngCommand({ ...base, disableMicrovm: true, force9p: true, verbose: true }).args;
    for (const flag of ['--disable-microvm', '--force-9p', '--verbose']) expect(all).toContain(flag);
  });

  it('uses the given vng path', () => {
    expect(buildVngCommand({ ...base, vngPath: '/opt/vng/bin/vng' }).cmd).toBe('/opt/vng/bin/vng');
  });

  it('rejects paths that vng would split in its shell command line', () => {
    expect(() => buildVngCommand({ ...base, kernel: '/home/me/my kernels/bzImage' })).toThrow(UserError);
    expect(() => buildVngCommand({ ...base, projectDir: '/tmp/a;rm -rf b' })).toThrow(/shell/);
  });

  it('rejects nonsense numbers', () => {
    expect(() => buildVngCommand({ ...base, sshPort: 0 })).toThrow(/SSH port/);
    expect(() => buildVngCommand({ ...base, sshPort: 70000 })).toThrow(/SSH port/);
    expect(() => buildVngCommand({ ...base, memoryMb: 1.5 })).toThrow(/memory/);
    expect(() => buildVngCommand({ ...base, cpus: 0 })).toThrow(/CPU/);
  });
});

describe('host checks', () => {
  it('says vng is missing and how to install it', () => {
    let err: unknown;
    try {
      checkVngHost(hostWithout('vng'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    const u = err as UserError;
    expect(u.message).toMatch(/`vng` was not found on PATH/);
    expect(u.message).toContain('pipx install virtme-ng');
    expect(u.message).toContain('pip install virtme-ng');
    expect(u.fix).toContain('pipx install virtme-ng');
  });

  it('start() fails with the same error, before spawning anything', async () => {
    const connectSsh: ConnectSsh = () => Promise.reject(new Error('must not be called'));
    const backend = new VngBackend({ ...base, connectSsh, host: hostWithout('vng') });
    await expect(backend.start()).rejects.toThrow(/pipx install virtme-ng/);
    await backend.stop(); // safe even though nothing started
  });

  it('returns the path of vng when everything is there', () => {
    expect(checkVngHost(hostWithout())).toBe('/usr/bin/vng');
  });

  it('asks for sshd and busybox, which the guest runs from the host', () => {
    expect(() => checkVngHost(hostWithout('/usr/sbin/sshd'))).toThrow(/sshd/);
    const noBusybox = hostWithout('busybox', 'busybox-static');
    noBusybox.exists = (p) => !p.includes('busybox');
    expect(() => checkVngHost(noBusybox)).toThrow(/busybox/);
  });
});

describe('findGuestKey', () => {
  it("prefers vng's own key, then the user's", () => {
    const files = new Set([
      '/h/.cache/virtme-ng/.ssh/id_virtme',
      '/h/.cache/virtme-ng/.ssh/id_virtme.pub',
      '/h/.ssh/id_rsa',
      '/h/.ssh/id_rsa.pub',
    ]);
    expect(findGuestKey('/h', (p) => files.has(p))).toBe('/h/.cache/virtme-ng/.ssh/id_virtme');
    files.delete('/h/.cache/virtme-ng/.ssh/id_virtme.pub');
    expect(findGuestKey('/h', (p) => files.has(p))).toBe('/h/.ssh/id_rsa');
    expect(findGuestKey('/nobody', (p) => files.has(p))).toBeUndefined();
  });
});

describe('VngBackend paths', () => {
  it('sees the project at its host path', () => {
    const b = new VngBackend({ ...base, connectSsh: () => Promise.reject(new Error('unused')) });
    expect(b.name).toBe('vng');
    expect(b.paths).toEqual({
      project: '/home/me/sockmap-labs',
      build: '/home/me/sockmap-labs/build',
      state: '/run/sockmap-labs',
    });
  });
});
