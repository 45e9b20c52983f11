// The errno values of wasi_snapshot_preview1 (typenames.witx, `errno`, a u16 enum) and the
// one place where host (Node/libuv) error codes become guest errnos. Numbers are the
// spec's; the names drop the leading `E` like the witx does.

/** WASI preview1 errno values, exactly as numbered in typenames.witx. */
export const Errno = {
  SUCCESS: 0,
  '2BIG': 1,
  ACCES: 2,
  ADDRINUSE: 3,
  ADDRNOTAVAIL: 4,
  AFNOSUPPORT: 5,
  AGAIN: 6,
  ALREADY: 7,
  BADF: 8,
  BADMSG: 9,
  BUSY: 10,
  CANCELED: 11,
  CHILD: 12,
  CONNABORTED: 13,
  CONNREFUSED: 14,
  CONNRESET: 15,
  DEADLK: 16,
  DESTADDRREQ: 17,
  DOM: 18,
  DQUOT: 19,
  EXIST: 20,
  FAULT: 21,
  FBIG: 22,
  HOSTUNREACH: 23,
  IDRM: 24,
  ILSEQ: 25,
  INPROGRESS: 26,
  INTR: 27,
  INVAL: 28,
  IO: 29,
  ISCONN: 30,
  ISDIR: 31,
  LOOP: 32,
  MFILE: 33,
  MLINK: 34,
  MSGSIZE: 35,
  MULTIHOP: 36,
  NAMETOOLONG: 37,
  NETDOWN: 38,
  NETRESET: 39,
  NETUNREACH: 40,
  NFILE: 41,
  NOBUFS: 42,
  NODEV: 43,
  NOENT: 44,
  NOEXEC: 45,
  NOLCK: 46,
  NOLINK: 47,
  NOMEM: 48,
  NOMSG: 49,
  NOPROTOOPT: 50,
  NOSPC: 51,
  NOSYS: 52,
  NOTCONN: 53,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTRECOVERABLE: 56,
  NOTSOCK: 57,
  NOTSUP: 58,
  NOTTY: 59,
  NXIO: 60,
  OVERFLOW: 61,
  OWNERDEAD: 62,
  PERM: 63,
  PIPE: 64,
  PROTO: 65,
  PROTONOSUPPORT: 66,
  PROTOTYPE: 67,
  RANGE: 68,
  ROFS: 69,
  SPIPE: 70,
  SRCH: 71,
  STALE: 72,
  TIMEDOUT: 73,
  TXTBSY: 74,
  XDEV: 75,
  NOTCAPABLE: 76
} as const

/** One WASI errno number. */
export type ErrnoValue = typeof Errno[keyof typeof Errno]

// Host error codes that have a WASI counterpart under a different name. Every other
// `E...` code is looked up by name in `Errno` (ENOENT -> NOENT, ...).
const aliases: Readonly<Record<string, ErrnoValue>> = {
  EOPNOTSUPP: Errno.NOTSUP,
  EWOULDBLOCK: Errno.AGAIN,
  // Node-level codes (not errno) that reach us from fs calls.
  ERR_FS_FILE_TOO_LARGE: Errno.FBIG,
  ERR_OUT_OF_RANGE: Errno.INVAL,
  ERR_INVALID_ARG_VALUE: Errno.INVAL,
  ERR_INVALID_ARG_TYPE: Errno.INVAL
}

const byName: ReadonlyMap<string, ErrnoValue> = new Map(
  Object.entries(Errno).map(([name, value]) => [`E${name}`, value] as const)
)

/**
 * Maps a host error code (`err.code` of a Node fs error, e.g. `ENOENT`) to a WASI errno.
 * Anything unknown becomes `EIO`: the guest learns that the call failed, never why in
 * host terms.
 */
export function errnoFromCode (code: unknown): ErrnoValue {
  if (typeof code !== 'string') return Errno.IO
  const value = aliases[code] ?? byName.get(code)
  return value === undefined || value === Errno.SUCCESS ? Errno.IO : value
}
