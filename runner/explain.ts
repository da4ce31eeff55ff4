// Failure explainers: when a step fails and its output shows a SOCKMAP
// operation failing with an errno (socklab's "insert a0 0: EOPNOTSUPP (…)",
// bpftool's "Error: map create failed: Invalid argument", strace's
// "bpf(BPF_MAP_UPDATE_ELEM, …) = -1 EBUSY (…)"), say what that errno means
// for that operation, in SOCKMAP terms, and which kernel function decides it.
// Where the answer depends on the kernel, the text names the versions: a
// distribution kernel may carry a later fix (Debian's 6.1 refuses an SK_MSG
// egress redirect to UDP as 6.6 does), so no rule is picked by version. Every reporter shows the same explanations
// (the executor attaches them to the step's result).
import { ERRNO_NAME_OF_MESSAGE } from './errno.ts';

export type Operation = 'create' | 'insert' | 'attach' | 'detach' | 'lookup' | 'delete' | 'send';

export interface Explanation {
  operation: Operation;
  errno: string;
  /** What it means, in SOCKMAP terms. */
  text: string;
  /** The kernel function (and file) that decides it. */
  source: string;
  /** The output line it explains. */
  line: string;
}

interface Rule {
  operation: Operation;
  errno: string;
  text: string;
  source: string;
}

/** What each (operation, errno) means. Keep them true on the kernels the labs run on (see /work's kernel-behaviour notes and the labs). */
const RULES: Rule[] = [
  {
    operation: 'insert',
    errno: 'EOPNOTSUPP',
    text:
      'the map refused the socket in the state it is in. TCP goes in only when established or listening (not fresh, bound-only or disconnected); ' +
      'UDP once bound (an unbound one depends on the kernel); a UNIX stream socket only when connected; UNIX dgram as it is; ' +
      'VSOCK only connected, and only since 6.4; UNIX seqpacket never. With a stream parser on the map, only TCP.',
    source: 'net/core/sock_map.c: sock_map_sk_state_allowed(), sock_map_sk_is_suitable()',
  },
  {
    operation: 'insert',
    errno: 'EBUSY',
    text: 'the socket already runs a program of this kind from another map (a socket takes one SK_MSG and one verdict program, from whichever map it went into first).',
    source: 'net/core/sock_map.c: sock_map_link() → sk_psock_init(); net/core/skmsg.c',
  },
  {
    operation: 'insert',
    errno: 'EINVAL',
    text: 'the value is not a socket fd the map can take (-1 or above INT_MAX), or the key/value size does not fit the map (a SOCKMAP key is a 4-byte index; the value is 4 or 8 bytes), or the socket carries a ULP such as kTLS (set TCP_ULP "tls"): a map takes no socket with a ULP.',
    source: 'net/core/sock_map.c: sock_map_update_elem_sys(), sock_map_link() → sk_psock_init() (net/core/skmsg.c)',
  },
  {
    operation: 'insert',
    errno: 'E2BIG',
    text: 'the key is past the end of the SOCKMAP (keys run from 0 to max_entries - 1), or the SOCKHASH is full.',
    source: 'net/core/sock_map.c: sock_map_update_common(), sock_hash_update_common()',
  },
  {
    operation: 'insert',
    errno: 'ENOTSOCK',
    text: 'the fd is not a socket: a SOCKMAP holds sockets only.',
    source: 'net/core/sock_map.c: sock_map_update_elem_sys() → sockfd_lookup()',
  },
  {
    operation: 'create',
    errno: 'EINVAL',
    text: 'the key or value size is wrong for the map type: a SOCKMAP key is 4 bytes (an index), a SOCKHASH key any size; the value is 4 or 8 bytes (a socket fd going in, its 8-byte cookie coming out).',
    source: 'net/core/sock_map.c: sock_map_alloc(), sock_hash_alloc()',
  },
  {
    operation: 'attach',
    errno: 'EBUSY',
    text: 'the map already has a program in that slot, or in one that excludes it: skb_verdict and stream_verdict are the same slot for stream data, so one of them at a time.',
    source: 'net/core/sock_map.c: sock_map_prog_link_lookup(), sock_map_prog_update()',
  },
  {
    operation: 'attach',
    errno: 'EINVAL',
    text: 'the program type does not match the attach type (SK_MSG → sk_msg_verdict; SK_SKB → stream_verdict, stream_parser or skb_verdict), or the target is not a SOCKMAP/SOCKHASH.',
    source: 'net/core/sock_map.c: sock_map_get_from_fd(), sock_map_prog_update()',
  },
  {
    operation: 'detach',
    errno: 'ENOENT',
    text: 'nothing of that kind is attached to the map (detaching twice, or a program that was never attached there). Sockets already in the map keep running a detached program until they leave it.',
    source: 'net/core/sock_map.c: sock_map_prog_detach() → sock_map_prog_update()',
  },
  {
    operation: 'lookup',
    errno: 'ENOENT',
    text: 'no socket at that key: never inserted, deleted, or its socket was closed (the last reference), which removes it from every map.',
    source: 'net/core/sock_map.c: sock_map_lookup_sys(), sock_map_close()',
  },
  {
    operation: 'lookup',
    errno: 'ENOSPC',
    text: 'from user space a lookup returns the socket cookie, 8 bytes: the map needs value size 8 for that (4 only takes fds in).',
    source: 'net/core/sock_map.c: sock_map_lookup_sys()',
  },
  {
    operation: 'delete',
    errno: 'EINVAL',
    text: 'on a SOCKMAP, deleting an empty slot (or a key past its end) is EINVAL; a SOCKHASH says ENOENT.',
    source: 'net/core/sock_map.c: __sock_map_delete()',
  },
  {
    operation: 'send',
    errno: 'EACCES',
    text:
      "an SK_MSG program dropped this send (SK_DROP, or a redirect that could not be done: an empty slot, a flag other than BPF_F_INGRESS, and since 6.6 an egress redirect to a non-TCP socket). " +
      'On TCP the drop is sticky: later sends on that socket fail the same way without running the program again; use a fresh socket for each case.',
    source: 'net/ipv4/tcp_bpf.c: tcp_bpf_send_verdict() (__SK_DROP → -EACCES)',
  },
];

/** The operation a line of output reports on, or undefined. */
function operationOf(line: string): Operation | undefined {
  const l = line.toLowerCase();
  if (/map create|bpf_map_create/.test(l)) return 'create';
  if (/\bdetach|bpf_prog_detach/.test(l)) return 'detach';
  if (/\battach|bpf_prog_attach|bpf_link_create/.test(l)) return 'attach';
  if (/\binsert\b|update failed|bpf_map_update_elem/.test(l)) return 'insert';
  if (/\blookup\b|bpf_map_lookup_elem/.test(l)) return 'lookup';
  if (/\bdelete\b|bpf_map_delete_elem/.test(l)) return 'delete';
  // bash's `echo … >&3` into a socket says "write error".
  if (/\bsend|sendto\(|sendmsg\(|write\(|write error/.test(l)) return 'send';
  return undefined;
}

/** The errno a line names (E… name, or glibc's message for it), or undefined. */
function errnoOf(line: string): string | undefined {
  const named = /\b(E[A-Z0-9]{2,})\b/.exec(line);
  if (named && named[1] !== 'ERROR') return named[1] === 'ENOTSUP' ? 'EOPNOTSUPP' : named[1];
  for (const [message, name] of ERRNO_NAME_OF_MESSAGE) if (line.includes(message)) return name;
  return undefined;
}

/**
 * The explanations for a failed step's output: one per
 * (operation, errno) seen, in the order seen. A line socklab marks as an
 * expected failure ("! …") and the errno the step itself expects explain
 * nothing: they are what the lab wanted.
 */
export function explainFailure(output: string, expectedErrno?: string): Explanation[] {
  const out: Explanation[] = [];
  const seen = new Set<string>();
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('! ')) continue;
    const errno = errnoOf(line);
    if (!errno || errno === expectedErrno) continue;
    const operation = operationOf(line);
    if (!operation) continue;
    const rule = RULES.find((r) => r.operation === operation && r.errno === errno);
    const key = `${operation} ${errno}`;
    if (!rule || seen.has(key)) continue;
    seen.add(key);
    out.push({ operation, errno, text: rule.text, source: rule.source, line });
  }
  return out;
}

/** One line for a report: "insert → EOPNOTSUPP: …". */
export const explanationLine = (e: Explanation) => `${e.operation} → ${e.errno}: ${e.text}`;
