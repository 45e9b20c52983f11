// The path_* functions. Every path goes through the jail (jail.ts) and every final host call
// acts on the resolved entry without following symlinks. Policy on top of POSIX:
// - a read-only volume refuses every change with EROFS before anything is resolved;
// - a guest creates symlinks only with a relative target that stays inside, read from where
//   the link is made (EPERM otherwise, as wasmtime); it may rename and hard-link them like
//   any file, as wasmtime allows: the jail judges a symlink each time it follows it, never
//   by where it was made;
// - a symlink's bytes (its target's length) count against the volume's quota like a file's;
// - hard links and renames need both ends writable, so a read-only file never gains a
//   writable name.
import { constants, fstatSync, linkSync, lutimesSync, mkdirSync, readlinkSync, renameSync, rmdirSync, symlinkSync, unlinkSync } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { DIR_RIGHTS, FDFLAGS_ALL, Fdflags, FILE_RIGHTS, FILE_WRITE_RIGHTS, Lookupflags, Oflags, Rights } from './constants'
import type { WasiContext } from './context'
import type { Descriptor } from './descriptor'
import { DirFd } from './dir-fd'
import { Errno } from './errno'
import { fail } from './errors'
import { MAX_FDS } from './fd-table'
import { FileFd, openElsewhere } from './file-fd'
import { checkGuestPath, checkNewLinkTarget, stripTrailingSlashes, visibleLinkText } from './jail'
import type { Located } from './jail'
import { FILESTAT, writeFilestat } from './layout'
import { encode } from './memory'
import type { WasiImports } from './signatures'
import { lstatOrNull, toFilestat } from './stat'

type PathNames =
  | 'path_create_directory' | 'path_filestat_get' | 'path_filestat_set_times' | 'path_link'
  | 'path_open' | 'path_readlink' | 'path_remove_directory' | 'path_rename' | 'path_symlink'
  | 'path_unlink_file'

const O = constants
const FILE_MODE = 0o644
const DIR_MODE = 0o755
const code = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code

/** Entries whose st_size a quota counts: files, and symlinks (their target's length). */
function counted (st: BigIntStats): boolean {
  return st.isFile() || st.isSymbolicLink()
}

/** Runs `fn` on a resolved path and always releases the walk's transient fds. */
function using<T> (loc: Located, fn: (loc: Located) => T): T {
  try {
    return fn(loc)
  } finally {
    loc.release()
  }
}

/** Builds the path_* imports of one instance. */
export function pathSyscalls (ctx: WasiContext): Pick<WasiImports, PathNames> {
  const { table, jail, hostFds } = ctx

  // Paths are relative to a directory fd; a non-directory fd is ENOTDIR like openat(2).
  const dirOf = (fd: number): DirFd => {
    const desc = table.get(fd)
    if (!(desc instanceof DirFd)) fail(Errno.NOTDIR)
    return desc
  }
  const pathArg = (ptr: number, len: number): string => {
    const path = ctx.mem().string(ptr, len)
    checkGuestPath(path)
    return path
  }
  const follows = (flags: number): boolean => (flags & Lookupflags.SYMLINK_FOLLOW) !== 0

  function openResolved (dir: DirFd, loc: Located, oflags: number, base: bigint, inheriting: bigint, fdflags: number): Descriptor {
    const pre = lstatOrNull(loc.hostPath)
    const creat = (oflags & Oflags.CREAT) !== 0
    const trunc = (oflags & Oflags.TRUNC) !== 0
    const wantDir = (oflags & Oflags.DIRECTORY) !== 0
    const changes = creat || trunc || (fdflags & Fdflags.APPEND) !== 0
    if (pre === null) {
      if (!creat) fail(Errno.NOENT)
      if (wantDir) fail(Errno.INVAL)
    } else {
      if (creat && (oflags & Oflags.EXCL) !== 0) fail(Errno.EXIST)
      // Not following (no SYMLINK_FOLLOW): a symlink here is ELOOP, as with O_NOFOLLOW.
      if (pre.isSymbolicLink()) fail(Errno.LOOP)
      if (pre.isDirectory()) {
        // FD_WRITE or a flag that would change it is EISDIR (as open(2) O_RDWR, and as
        // wasmtime); the other write rights mean nothing to a directory and are dropped.
        if (changes || (base & Rights.FD_WRITE) !== 0n) fail(Errno.ISDIR)
        return openDir(dir, loc, base, inheriting)
      }
      if (wantDir) fail(Errno.NOTDIR)
      // FIFOs, devices, sockets: opening one could block the worker or touch hardware.
      if (!pre.isFile()) fail(Errno.NOTSUP)
    }
    const write = changes || (base & FILE_WRITE_RIGHTS) !== 0n
    if (write) dir.volume.assertWritable()
    const read = (base & (Rights.FD_READ | Rights.FD_READDIR)) !== 0n
    const access = write ? (read ? O.O_RDWR : O.O_WRONLY) : O.O_RDONLY
    const flags = access | O.O_NOFOLLOW | O.O_NONBLOCK | (creat ? O.O_CREAT : 0) |
      ((oflags & Oflags.EXCL) !== 0 ? O.O_EXCL : 0) | (trunc ? O.O_TRUNC : 0)
    let fd: number
    if (pre === null) {
      // A new name: recorded (within the entry cap) before it is made. O_EXCL tells whether
      // this call made it; a name another call made meanwhile is opened as it is (unless the
      // guest asked for EXCL) and costs this call nothing.
      dir.volume.addEntry()
      try {
        fd = hostFds.open(loc.hostPath, flags | O.O_EXCL, FILE_MODE)
      } catch (err) {
        dir.volume.removeEntry()
        if (code(err) !== 'EEXIST' || (oflags & Oflags.EXCL) !== 0) throw err
        fd = hostFds.open(loc.hostPath, flags, FILE_MODE)
      }
    } else {
      fd = hostFds.open(loc.hostPath, flags, FILE_MODE)
    }
    let st: BigIntStats
    try {
      st = fstatSync(fd, { bigint: true })
      if (!st.isFile()) fail(st.isDirectory() ? Errno.ISDIR : Errno.NOTSUP)
    } catch (err) {
      hostFds.close(fd)
      throw err
    }
    // O_TRUNC freed what the file held (bytes are per inode, whatever its link count).
    if (pre?.isFile() === true) dir.volume.account(Number(st.size - pre.size))
    return new FileFd(hostFds, fd, dir.volume, base & FILE_RIGHTS, fdflags)
  }

  function openDir (dir: DirFd, loc: Located, base: bigint, inheriting: bigint): DirFd {
    const fd = hostFds.open(loc.hostPath, O.O_RDONLY | O.O_DIRECTORY | O.O_NOFOLLOW | O.O_NONBLOCK)
    try {
      // Without /proc the new fd's paths are real paths: the walk left no symlink in it.
      const node = jail.nodeFor(fd, loc.hostPath)
      return new DirFd(hostFds, fd, node, dir.volume, base & DIR_RIGHTS, inheriting & (DIR_RIGHTS | FILE_RIGHTS))
    } catch (err) {
      hostFds.close(fd)
      throw err
    }
  }

  return {
    path_create_directory (fd, pathPtr, pathLen) {
      const dir = dirOf(fd)
      dir.need(Rights.PATH_CREATE_DIRECTORY)
      const path = pathArg(pathPtr, pathLen)
      dir.volume.assertWritable()
      // `mkdir("a/")` creates `a`: the trailing slash only says "a directory".
      using(jail.resolve(dir.node, stripTrailingSlashes(path).path, false), (loc) => {
        if (lstatOrNull(loc.hostPath) !== null) fail(Errno.EXIST)
        dir.volume.addEntry()
        try {
          mkdirSync(loc.hostPath, DIR_MODE)
        } catch (err) {
          dir.volume.removeEntry()
          throw err
        }
      })
      return Errno.SUCCESS
    },

    path_filestat_get (fd, flags, pathPtr, pathLen, statPtr) {
      const dir = dirOf(fd)
      dir.need(Rights.PATH_FILESTAT_GET)
      const path = pathArg(pathPtr, pathLen)
      const mem = ctx.mem()
      mem.check(statPtr, FILESTAT.size)
      // With SYMLINK_FOLLOW the walk already replaced a final symlink by its target.
      const st = using(jail.resolve(dir.node, path, follows(flags)), (loc) => {
        const st = lstatOrNull(loc.hostPath)
        return st ?? fail(Errno.NOENT)
      })
      writeFilestat(mem, statPtr, ctx.times.view(toFilestat(st)))
      return Errno.SUCCESS
    },

    path_filestat_set_times (fd, flags, pathPtr, pathLen, atim, mtim, fstFlags) {
      const dir = dirOf(fd)
      dir.need(Rights.PATH_FILESTAT_SET_TIMES)
      const path = pathArg(pathPtr, pathLen)
      dir.volume.assertWritable()
      using(jail.resolve(dir.node, path, follows(flags)), (loc) => {
        const current = (): BigIntStats => lstatOrNull(loc.hostPath) ?? fail(Errno.NOENT)
        ctx.times.set(atim, mtim, fstFlags, current, (a, m) => lutimesSync(loc.hostPath, a, m))
      })
      return Errno.SUCCESS
    },

    path_link (oldFd, oldFlags, oldPtr, oldLen, newFd, newPtr, newLen) {
      const src = dirOf(oldFd)
      const dst = dirOf(newFd)
      src.need(Rights.PATH_LINK_SOURCE)
      dst.need(Rights.PATH_LINK_TARGET)
      const oldPath = pathArg(oldPtr, oldLen)
      const newPath = pathArg(newPtr, newLen)
      src.volume.assertWritable()
      dst.volume.assertWritable()
      using(jail.resolve(src.node, oldPath, follows(oldFlags)), (from) => {
        const st = lstatOrNull(from.hostPath) ?? fail(Errno.NOENT)
        if (st.isDirectory()) fail(Errno.PERM)
        using(jail.resolve(dst.node, newPath, false), (to) => {
          // Bytes are per inode: a new name in another volume makes that volume hold them too.
          const cross = src.volume.quota !== dst.volume.quota ? Number(st.size) : 0
          dst.volume.addEntry()
          let reserved = 0
          try {
            reserved = dst.volume.reserve(cross)
            linkSync(from.hostPath, to.hostPath)
          } catch (err) {
            dst.volume.account(-reserved)
            dst.volume.removeEntry()
            throw err
          }
        })
      })
      return Errno.SUCCESS
    },

    path_open (fd, dirflags, pathPtr, pathLen, oflags, rightsBase, rightsInheriting, fdflags, fdPtr) {
      const dir = dirOf(fd)
      dir.need(Rights.PATH_OPEN)
      if ((oflags & ~0xf) !== 0 || (fdflags & ~FDFLAGS_ALL) !== 0) fail(Errno.INVAL)
      const path = pathArg(pathPtr, pathLen)
      const mem = ctx.mem()
      mem.check(fdPtr, 4)
      if ((oflags & Oflags.CREAT) !== 0) dir.need(Rights.PATH_CREATE_FILE)
      if ((oflags & Oflags.TRUNC) !== 0) dir.need(Rights.PATH_FILESTAT_SET_SIZE)
      // Asking for more than the directory passes on is not an error: libcs ask for
      // everything and keep what they get (what wasi-libc does with fdstat too).
      const base = rightsBase & dir.rightsInheriting
      const inheriting = rightsInheriting & dir.rightsInheriting
      // Flags that change a file are refused on a read-only volume before anything is
      // resolved; write rights are judged once the target is known to be a file.
      if ((oflags & (Oflags.CREAT | Oflags.TRUNC)) !== 0 || (fdflags & Fdflags.APPEND) !== 0) dir.volume.assertWritable()
      // Checked before opening, so EMFILE never leaves a created file behind.
      if (table.size >= MAX_FDS) fail(Errno.MFILE)
      const desc = using(jail.resolve(dir.node, path, follows(dirflags)), (loc) =>
        openResolved(dir, loc, oflags, base, inheriting, fdflags))
      if (desc instanceof DirFd) desc.fdflags = fdflags
      mem.setU32(fdPtr, table.add(desc))
      return Errno.SUCCESS
    },

    path_readlink (fd, pathPtr, pathLen, buf, bufLen, bufusedPtr) {
      const dir = dirOf(fd)
      dir.need(Rights.PATH_READLINK)
      const path = pathArg(pathPtr, pathLen)
      const mem = ctx.mem()
      mem.check(bufusedPtr, 4)
      mem.check(buf, bufLen)
      const text = using(jail.resolve(dir.node, path, false), (loc) =>
        visibleLinkText(loc.dir, loc.depth, dir.node, readlinkSync(loc.hostPath)))
      // Like readlink(2): silently truncated to the buffer.
      const bytes = encode(text).subarray(0, bufLen)
      mem.write(buf, bytes)
      mem.setU32(bufusedPtr, bytes.byteLength)
      return Errno.SUCCESS
    },

    path_remove_directory (fd, pathPtr, pathLen) {
      const dir = dirOf(fd)
      dir.need(Rights.PATH_REMOVE_DIRECTORY)
      const path = pathArg(pathPtr, pathLen)
      dir.volume.assertWritable()
      using(jail.resolve(dir.node, stripTrailingSlashes(path).path, false), (loc) => {
        rmdirSync(loc.hostPath)
        dir.volume.removeEntry()
      })
      return Errno.SUCCESS
    },

    path_rename (fd, oldPtr, oldLen, newFd, newPtr, newLen) {
      const src = dirOf(fd)
      const dst = dirOf(newFd)
      src.need(Rights.PATH_RENAME_SOURCE)
      dst.need(Rights.PATH_RENAME_TARGET)
      const oldPath = stripTrailingSlashes(pathArg(oldPtr, oldLen))
      const newPath = stripTrailingSlashes(pathArg(newPtr, newLen))
      src.volume.assertWritable()
      dst.volume.assertWritable()
      using(jail.resolve(src.node, oldPath.path, false), (from) => {
        const st = lstatOrNull(from.hostPath) ?? fail(Errno.NOENT)
        if ((oldPath.trailing || newPath.trailing) && !st.isDirectory()) fail(Errno.NOTDIR)
        using(jail.resolve(dst.node, newPath.path, false), (to) => {
          const replaced = lstatOrNull(to.hostPath)
          // Renaming onto another name of the same file frees nothing; a replaced file still
          // open somewhere keeps its bytes charged until its last fd closes (file-fd.ts).
          const same = replaced !== null && replaced.ino === st.ino && replaced.dev === st.dev
          const lastName = !same && replaced !== null && counted(replaced) && replaced.nlink === 1n ? replaced : undefined
          const freed = lastName !== undefined ? Number(lastName.size) : 0
          const cross = src.volume.quota !== dst.volume.quota
          // A directory tree moving between quotas would need a walk to account for:
          // EXDEV tells the guest to copy instead, as across file systems.
          if (cross && st.isDirectory() && (src.volume.quota !== undefined || dst.volume.quota !== undefined)) fail(Errno.XDEV)
          const moved = cross && counted(st) ? Number(st.size) : 0
          // Names: one leaves the source; the destination gains one unless one is replaced.
          const newName = cross && replaced === null
          if (newName) dst.volume.addEntry()
          let reserved = 0
          try {
            reserved = dst.volume.reserve(moved - freed)
            renameSync(from.hostPath, to.hostPath)
          } catch (err) {
            dst.volume.account(-reserved)
            if (newName) dst.volume.removeEntry()
            throw err
          }
          // Asked after the rename: an fd opened before it is seen, none can be opened after.
          const kept = lastName !== undefined && lastName.isFile() && freed > 0 && openElsewhere(lastName) ? freed : 0
          dst.volume.account(moved - freed + kept - reserved)
          src.volume.account(-moved)
          if (!same && (cross || replaced !== null)) src.volume.removeEntry()
        })
      })
      return Errno.SUCCESS
    },

    path_symlink (oldPtr, oldLen, fd, newPtr, newLen) {
      const dir = dirOf(fd)
      dir.need(Rights.PATH_SYMLINK)
      const target = ctx.mem().string(oldPtr, oldLen)
      // `symlink(t, "a/")`: the trailing slash says "a directory", which a new link is not.
      const { path, trailing } = stripTrailingSlashes(pathArg(newPtr, newLen))
      dir.volume.assertWritable()
      using(jail.resolve(dir.node, path, false), (loc) => {
        checkNewLinkTarget(target, loc.depth)
        const existing = lstatOrNull(loc.hostPath)
        if (existing !== null) fail(trailing && !existing.isDirectory() ? Errno.NOTDIR : Errno.EXIST)
        if (trailing) fail(Errno.NOENT)
        // A new name, and its target's length in bytes: both reserved in the volume's shared
        // account before the link exists, given back if it cannot be made.
        dir.volume.addEntry()
        let reserved = 0
        try {
          reserved = dir.volume.reserve(Buffer.byteLength(target))
          symlinkSync(target, loc.hostPath)
        } catch (err) {
          dir.volume.account(-reserved)
          dir.volume.removeEntry()
          throw err
        }
      })
      return Errno.SUCCESS
    },

    path_unlink_file (fd, pathPtr, pathLen) {
      const dir = dirOf(fd)
      dir.need(Rights.PATH_UNLINK_FILE)
      const { path, trailing } = stripTrailingSlashes(pathArg(pathPtr, pathLen))
      dir.volume.assertWritable()
      using(jail.resolve(dir.node, path, false), (loc) => {
        const st = lstatOrNull(loc.hostPath) ?? fail(Errno.NOENT)
        if (st.isDirectory()) fail(Errno.ISDIR)
        if (trailing) fail(Errno.NOTDIR)
        unlinkSync(loc.hostPath)
        dir.volume.removeEntry()
        // The last name of a file still open somewhere: its blocks stay on disk, and charged,
        // until its last fd closes (file-fd.ts). Asked after the unlink, so no fd is missed.
        if (counted(st) && st.nlink === 1n && st.size > 0n && !(st.isFile() && openElsewhere(st))) dir.volume.account(-Number(st.size))
      })
      return Errno.SUCCESS
    }
  }
}
