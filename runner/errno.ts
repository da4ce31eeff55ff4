// Linux errno names and glibc's messages for them, so that a step "fails with
// EACCES" whether the tool prints the name (strace: "= -1 EACCES (Permission
// denied)") or only the message (bpftool: "Error: ...: Permission denied").
import os from 'node:os';

export const ERRNO_MESSAGES: Record<string, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  ESRCH: 'No such process',
  EINTR: 'Interrupted system call',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  E2BIG: 'Argument list too long',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EFAULT: 'Bad address',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  EMFILE: 'Too many open files',
  ENOSPC: 'No space left on device',
  EPIPE: 'Broken pipe',
  ERANGE: 'Numerical result out of range',
  ENOSYS: 'Function not implemented',
  ENOTSUP: 'Operation not supported',
  ENOTSOCK: 'Socket operation on non-socket',
  EPROTOTYPE: 'Protocol wrong type for socket',
  EPROTONOSUPPORT: 'Protocol not supported',
  EOPNOTSUPP: 'Operation not supported',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  EADDRINUSE: 'Address already in use',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  ENETUNREACH: 'Network is unreachable',
  ECONNRESET: 'Connection reset by peer',
  EISCONN: 'Transport endpoint is already connected',
  ENOTCONN: 'Transport endpoint is not connected',
  ETIMEDOUT: 'Connection timed out',
  ECONNREFUSED: 'Connection refused',
  EALREADY: 'Operation already in progress',
  EINPROGRESS: 'Operation now in progress',
  ENOTSUPP: 'Unknown error 524',
};

export function isKnownErrno(name: string): boolean {
  return name in ERRNO_MESSAGES || name in os.constants.errno;
}

/** The two ways a program may report `name`: the name itself, or its message. */
export function errnoPatterns(name: string): RegExp[] {
  const pats = [new RegExp(`\\b${name}\\b`)];
  const msg = ERRNO_MESSAGES[name];
  if (msg) pats.push(new RegExp(msg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i'));
  return pats;
}
