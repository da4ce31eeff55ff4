// Linux errno names and glibc's messages for them, so that a step "fails with
// EACCES" whether the tool prints the name (strace: "= -1 EACCES (Permission
// denied)") or only the message (bpftool: "Error: ...: Permission denied").
const ERRNO_MESSAGES: Record<string, string> = {
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
  ECHILD: 'No child processes',
  ENOEXEC: 'Exec format error',
  ENOTBLK: 'Block device required',
  EXDEV: 'Invalid cross-device link',
  ENFILE: 'Too many open files in system',
  ENOTTY: 'Inappropriate ioctl for device',
  ETXTBSY: 'Text file busy',
  EFBIG: 'File too large',
  ESPIPE: 'Illegal seek',
  EROFS: 'Read-only file system',
  EMLINK: 'Too many links',
  EDOM: 'Numerical argument out of domain',
  EDEADLK: 'Resource deadlock avoided',
  ENAMETOOLONG: 'File name too long',
  ENOLCK: 'No locks available',
  ENOTEMPTY: 'Directory not empty',
  ELOOP: 'Too many levels of symbolic links',
  ENOMSG: 'No message of desired type',
  ENODATA: 'No data available',
  ETIME: 'Timer expired',
  EPROTO: 'Protocol error',
  EBADMSG: 'Bad message',
  EOVERFLOW: 'Value too large for defined data type',
  EILSEQ: 'Invalid or incomplete multibyte or wide character',
  EDESTADDRREQ: 'Destination address required',
  EMSGSIZE: 'Message too long',
  ENOPROTOOPT: 'Protocol not available',
  ESOCKTNOSUPPORT: 'Socket type not supported',
  EPFNOSUPPORT: 'Protocol family not supported',
  ENETDOWN: 'Network is down',
  ENETRESET: 'Network dropped connection on reset',
  ECONNABORTED: 'Software caused connection abort',
  ENOBUFS: 'No buffer space available',
  ESHUTDOWN: 'Cannot send after transport endpoint shutdown',
  EHOSTDOWN: 'Host is down',
  EHOSTUNREACH: 'No route to host',
  ESTALE: 'Stale file handle',
  EDQUOT: 'Disk quota exceeded',
  ECANCELED: 'Operation canceled',
  EKEYREJECTED: 'Key was rejected by service',
  EIDRM: 'Identifier removed',
  EMULTIHOP: 'Multihop attempted',
  ENOLINK: 'Link has been severed',
  ENOSR: 'Out of streams resources',
  ENOSTR: 'Device not a stream',
};

/** Known means: we can recognise it by its message too (so the check can be trusted). */
export function isKnownErrno(name: string): boolean {
  return name in ERRNO_MESSAGES;
}

/** The two ways a program may report `name`: the name itself, or its message. */
export function errnoPatterns(name: string): RegExp[] {
  const pats = [new RegExp(`\\b${name}\\b`)];
  const msg = ERRNO_MESSAGES[name];
  if (msg) pats.push(new RegExp(msg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i'));
  return pats;
}

/**
 * From a message back to its name, for output that prints only the message
 * (bpftool): longest message first, so no message matches inside a longer one;
 * where two names share a message, the one Linux returns (EOPNOTSUPP over ENOTSUP).
 */
export const ERRNO_NAME_OF_MESSAGE: [message: string, name: string][] = Object.entries(ERRNO_MESSAGES)
  .filter(([name]) => name !== 'ENOTSUP')
  .map(([name, message]): [string, string] => [message, name])
  .sort((a, b) => b[0].length - a[0].length);
