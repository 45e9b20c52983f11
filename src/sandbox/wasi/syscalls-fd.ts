// The fd_* functions. Each one finds the descriptor (EBADF), checks the guest pointers it
// will write through BEFORE any side effect (so EFAULT never follows a completed write), and
// lets the descriptor class decide what the fd supports. Arguments arrive already checked
// and unsigned (see index.ts); they return an errno.
import type { WasiContext } from './context'
import { DirFd } from './dir-fd'
import { Errno } from './errno'
import { fail } from './errors'
import { encodeDirent, writeFdstat, writeFilestat, writePrestatDir, FDSTAT, FILESTAT, PRESTAT } from './layout'
import { encode } from './memory'
import type { WasiImports } from './signatures'

type FdNames =
  | 'fd_advise' | 'fd_allocate' | 'fd_close' | 'fd_datasync' | 'fd_fdstat_get' | 'fd_fdstat_set_flags'
  | 'fd_fdstat_set_rights' | 'fd_filestat_get' | 'fd_filestat_set_size' | 'fd_filestat_set_times'
  | 'fd_pread' | 'fd_prestat_get' | 'fd_prestat_dir_name' | 'fd_pwrite' | 'fd_read' | 'fd_readdir'
  | 'fd_renumber' | 'fd_seek' | 'fd_sync' | 'fd_tell' | 'fd_write'

/** The preopen name of `fd`, or EBADF (wasi-libc scans fds from 3 until EBADF). */
function preopenName (ctx: WasiContext, fd: number): Uint8Array {
  const desc = ctx.table.get(fd)
  if (!(desc instanceof DirFd) || desc.preopenName === undefined) fail(Errno.BADF)
  return encode(desc.preopenName)
}

/** Builds the fd_* imports of one instance. */
export function fdSyscalls (ctx: WasiContext): Pick<WasiImports, FdNames> {
  const { table } = ctx
  return {
    fd_advise (fd, offset, len, advice) {
      table.get(fd).advise(offset, len, advice)
      return Errno.SUCCESS
    },

    fd_allocate (fd, offset, len) {
      table.get(fd).allocate(offset, len)
      return Errno.SUCCESS
    },

    fd_close (fd) {
      table.close(fd)
      return Errno.SUCCESS
    },

    fd_datasync (fd) {
      table.get(fd).datasync()
      return Errno.SUCCESS
    },

    fd_fdstat_get (fd, statPtr) {
      const desc = table.get(fd)
      const mem = ctx.mem()
      mem.check(statPtr, FDSTAT.size)
      writeFdstat(mem, statPtr, desc.fdstat())
      return Errno.SUCCESS
    },

    fd_fdstat_set_flags (fd, flags) {
      table.get(fd).setFlags(flags)
      return Errno.SUCCESS
    },

    fd_fdstat_set_rights (fd, base, inheriting) {
      table.get(fd).setRights(base, inheriting)
      return Errno.SUCCESS
    },

    fd_filestat_get (fd, statPtr) {
      const desc = table.get(fd)
      const mem = ctx.mem()
      mem.check(statPtr, FILESTAT.size)
      writeFilestat(mem, statPtr, ctx.times.view(desc.filestat()))
      return Errno.SUCCESS
    },

    fd_filestat_set_size (fd, size) {
      table.get(fd).setSize(size)
      return Errno.SUCCESS
    },

    fd_filestat_set_times (fd, atim, mtim, flags) {
      table.get(fd).setTimes(atim, mtim, flags, ctx.times)
      return Errno.SUCCESS
    },

    fd_pread (fd, iovs, iovsLen, offset, nreadPtr) {
      const desc = table.get(fd)
      const mem = ctx.mem()
      mem.check(nreadPtr, 4)
      mem.setU32(nreadPtr, desc.pread(mem.iovecs(iovs, iovsLen), offset))
      return Errno.SUCCESS
    },

    fd_prestat_get (fd, prestatPtr) {
      const name = preopenName(ctx, fd)
      const mem = ctx.mem()
      mem.check(prestatPtr, PRESTAT.size)
      writePrestatDir(mem, prestatPtr, name.byteLength)
      return Errno.SUCCESS
    },

    fd_prestat_dir_name (fd, pathPtr, pathLen) {
      const name = preopenName(ctx, fd)
      if (pathLen < name.byteLength) fail(Errno.NAMETOOLONG)
      ctx.mem().write(pathPtr, name)
      return Errno.SUCCESS
    },

    fd_pwrite (fd, iovs, iovsLen, offset, nwrittenPtr) {
      const desc = table.get(fd)
      const mem = ctx.mem()
      mem.check(nwrittenPtr, 4)
      mem.setU32(nwrittenPtr, desc.pwrite(mem.iovecs(iovs, iovsLen), offset))
      return Errno.SUCCESS
    },

    fd_read (fd, iovs, iovsLen, nreadPtr) {
      const desc = table.get(fd)
      const mem = ctx.mem()
      mem.check(nreadPtr, 4)
      mem.setU32(nreadPtr, desc.read(mem.iovecs(iovs, iovsLen)))
      return Errno.SUCCESS
    },

    // Fills the buffer with whole dirents and, when the next one does not fit, with as much
    // of it as fits: a full buffer tells the caller to retry with a bigger one.
    fd_readdir (fd, buf, bufLen, cookie, bufusedPtr) {
      const desc = table.get(fd)
      const mem = ctx.mem()
      mem.check(bufusedPtr, 4)
      mem.check(buf, bufLen)
      let used = 0
      let next = cookie
      for (const entry of desc.readdir(cookie)) {
        if (used >= bufLen) break
        next += 1n
        const bytes = encodeDirent(next, entry.ino, entry.filetype, entry.name)
        const n = Math.min(bytes.byteLength, bufLen - used)
        mem.write(buf + used, bytes.subarray(0, n))
        used += n
      }
      mem.setU32(bufusedPtr, used)
      return Errno.SUCCESS
    },

    fd_renumber (from, to) {
      table.renumber(from, to)
      return Errno.SUCCESS
    },

    fd_seek (fd, offset, whence, newOffsetPtr) {
      const desc = table.get(fd)
      const mem = ctx.mem()
      mem.check(newOffsetPtr, 8)
      mem.setU64(newOffsetPtr, desc.seek(offset, whence))
      return Errno.SUCCESS
    },

    fd_sync (fd) {
      table.get(fd).sync()
      return Errno.SUCCESS
    },

    fd_tell (fd, offsetPtr) {
      const desc = table.get(fd)
      const mem = ctx.mem()
      mem.check(offsetPtr, 8)
      mem.setU64(offsetPtr, desc.tell())
      return Errno.SUCCESS
    },

    fd_write (fd, iovs, iovsLen, nwrittenPtr) {
      const desc = table.get(fd)
      const mem = ctx.mem()
      mem.check(nwrittenPtr, 4)
      mem.setU32(nwrittenPtr, desc.write(mem.iovecs(iovs, iovsLen)))
      return Errno.SUCCESS
    }
  }
}
