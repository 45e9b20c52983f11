// Path resolution inside a directory fd: the security boundary of the WASI layer.
//
// Rules: absolute guest paths are refused; a path is walked one component at a time with
// lstat; `..` pops the walk's own stack and can never pop the starting directory; a symlink
// is followed only by re-walking its target from where it sits, so it is subject to the same
// rules, and an absolute target must lie under the starting directory's real path. That
// holds for every symlink, whoever made it: the operator may plant any; a guest may create
// one only with a relative target that stays inside when read from where it is created
// (`checkNewLinkTarget`, cap-std's rule), and may then move or hard-link it anywhere in the
// volume, where its text may come to point outside: it is judged again each time it is
// followed, never trusted for where it was made. The walk hands
// back (directory, final name) and the caller acts on the final name WITHOUT following
// symlinks (O_NOFOLLOW, lstat, lutimes, link without follow): the kernel never follows a
// symlink on our behalf.
//
// On Linux each directory of the walk is opened (O_DIRECTORY | O_NOFOLLOW) and the next
// component is named through `/proc/self/fd/<fd>/<name>`, which the kernel resolves
// relative to that open directory like openat(2). A concurrent rename by another instance
// sharing the volume therefore cannot swap a checked directory for a symlink between the
// check and the use. Where /proc is missing, real path strings are used instead (same rules,
// but only as strong as the absence of concurrent writers to the volume).
import { constants, lstatSync, readlinkSync } from 'node:fs'
import { posix } from 'node:path'
import { Errno } from './errno'
import { fail } from './errors'
import type { HostFds } from './host-fds'
import { lstatOrNull } from './stat'

/** Longest guest path accepted, in bytes (Linux PATH_MAX). */
export const PATH_MAX = 4096
/** Most symlinks one resolution follows (Linux allows 40). */
export const MAX_SYMLINKS = 32
/** Deepest directory nesting one resolution descends through. */
export const MAX_DEPTH = 128

const DIR_OPEN_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW | constants.O_NONBLOCK

/** A directory the walk stands in. */
export interface DirNode {
  /** A path that names this directory for host calls (a /proc fd path or a real path). */
  readonly path: string
  /** The host path of the entry `name` inside this directory. */
  child: (name: string) => string
  /** The directory's current real path (for absolute symlink targets). */
  realPath: () => string
  /** Releases what the node holds (a transient fd); no-op for borrowed nodes. */
  release: () => void
}

/** A node named through an open host fd (`/proc/self/fd/N`). */
export class FdDirNode implements DirNode {
  readonly path: string
  readonly #fd: number
  readonly #owner: HostFds | undefined

  /** `owner` is set for transient nodes the walk opened and must close. */
  constructor (fd: number, owner?: HostFds) {
    this.#fd = fd
    this.#owner = owner
    this.path = `/proc/self/fd/${fd}`
  }

  child (name: string): string { return `${this.path}/${name}` }
  realPath (): string { return readlinkSync(this.path) }
  release (): void { this.#owner?.close(this.#fd) }
}

/** A node named by its real path (fallback without /proc). */
export class PathDirNode implements DirNode {
  readonly path: string
  constructor (realPath: string) { this.path = posix.normalize(realPath) }
  child (name: string): string { return this.path === '/' ? `/${name}` : `${this.path}/${name}` }
  realPath (): string { return this.path }
  release (): void {}
}

/** Where a guest path landed: a directory and the final name in it (`.` for the dir itself). */
export interface Located {
  readonly dir: DirNode
  readonly name: string
  /** How many directories below the starting one `dir` is. */
  readonly depth: number
  /** Host path of the final entry. */
  readonly hostPath: string
  /** Closes the transient fds of the walk. Always call it (try/finally). */
  release: () => void
}

/** Splits a relative path into components; a trailing slash means "a directory": `x/` is `x/.`. */
export function components (path: string): string[] {
  const parts = path.split('/').filter((c) => c !== '')
  if (path.endsWith('/')) parts.push('.')
  return parts
}

/** Removes trailing slashes (`a/b//` -> `a/b`), telling whether there were any. */
export function stripTrailingSlashes (path: string): { path: string, trailing: boolean } {
  let end = path.length
  while (end > 1 && path[end - 1] === '/') end--
  return { path: path.slice(0, end), trailing: end !== path.length }
}

/** Validates a guest path before any host call: relative, no NUL, not too long. */
export function checkGuestPath (path: string): void {
  if (path.length === 0) fail(Errno.NOENT)
  if (path.includes('\0')) fail(Errno.INVAL)
  if (Buffer.byteLength(path) > PATH_MAX) fail(Errno.NAMETOOLONG)
  if (path.startsWith('/')) fail(Errno.NOTCAPABLE)
}

/** True when `/proc/self/fd/<fd>` names the same directory as the open `fd` (Linux procfs). */
export function procFdWorks (fd: number, realPath: string): boolean {
  try {
    const viaProc = lstatSync(`/proc/self/fd/${fd}/.`, { bigint: true })
    const direct = lstatSync(realPath, { bigint: true })
    return viaProc.ino === direct.ino && viaProc.dev === direct.dev
  } catch {
    return false
  }
}

/** Resolves guest paths inside directories; one per WASI instance. */
export class Jail {
  readonly #hostFds: HostFds
  readonly #useProc: boolean

  constructor (hostFds: HostFds, useProc: boolean) {
    this.#hostFds = hostFds
    this.#useProc = useProc
  }

  /** The node for a directory fd the caller owns (a preopen or an opened directory). */
  nodeFor (fd: number, realPath: string): DirNode {
    return this.#useProc ? new FdDirNode(fd) : new PathDirNode(realPath)
  }

  /**
   * Resolves `path` below `root`. With `follow`, a symlink in the final position is followed
   * too (intermediate ones always are). The final entry need not exist.
   */
  resolve (root: DirNode, path: string, follow: boolean): Located {
    checkGuestPath(path)
    const queue = components(path)
    const stack: DirNode[] = [root]
    const release = (): void => {
      while (stack.length > 1) stack.pop()?.release()
    }
    const located = (name: string): Located => {
      const dir = stack[stack.length - 1] ?? root
      return { dir, name, depth: stack.length - 1, hostPath: dir.child(name), release }
    }
    try {
      let links = 0
      for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
        const last = queue.length === 0
        const top = stack[stack.length - 1] ?? root
        if (part === '.') {
          if (last) return located('.')
          continue
        }
        if (part === '..') {
          // The boundary: the starting directory is never popped.
          if (stack.length === 1) fail(Errno.NOTCAPABLE)
          stack.pop()?.release()
          if (last) return located('.')
          continue
        }
        if (last && !follow) return located(part)
        const st = lstatOrNull(top.child(part))
        if (st === null) {
          if (last) return located(part)
          fail(Errno.NOENT)
        }
        if (st.isSymbolicLink()) {
          if (++links > MAX_SYMLINKS) fail(Errno.LOOP)
          const target = readlinkSync(top.child(part))
          if (target.length === 0) fail(Errno.NOENT)
          if (target.startsWith('/')) {
            queue.unshift(...components(insideRoot(root, target)))
            release()
          } else {
            queue.unshift(...components(target))
          }
          continue
        }
        if (last) return located(part)
        if (!st.isDirectory()) fail(Errno.NOTDIR)
        if (stack.length > MAX_DEPTH) fail(Errno.NAMETOOLONG)
        stack.push(this.#descend(top, part))
      }
      return located('.')
    } catch (err) {
      release()
      throw err
    }
  }

  #descend (parent: DirNode, name: string): DirNode {
    if (!this.#useProc) return new PathDirNode(parent.child(name))
    // O_NOFOLLOW: if the entry was swapped for a symlink since the lstat, this fails
    // (ELOOP/ENOTDIR) instead of following it.
    const fd = this.#hostFds.open(parent.child(name), DIR_OPEN_FLAGS)
    return new FdDirNode(fd, this.#hostFds)
  }
}

/**
 * An absolute symlink target, made relative to the jail root: allowed only when it lies
 * under the root's real path. Returns `.` for the root itself.
 */
function insideRoot (root: DirNode, target: string): string {
  const base = root.realPath()
  const normal = posix.normalize(target)
  if (base === '/') return normal.slice(1) || '.'
  if (normal === base) return '.'
  if (!normal.startsWith(`${base}/`)) fail(Errno.NOTCAPABLE)
  // The rest is walked component by component like any relative path, so a `..` in it
  // that was normalized away is harmless: normalize only shortened a lexical path that
  // starts inside, and the walk re-checks every step.
  return normal.slice(base.length + 1) || '.'
}

/**
 * Whether a relative symlink text, read lexically from a directory `depth` levels below the
 * root, stays at or below the root at every step.
 */
function staysBelow (target: string, depth: number): boolean {
  let level = depth
  for (const part of components(target)) {
    if (part === '..') level--
    else if (part !== '.') level++
    if (level < 0) return false
  }
  return true
}

/**
 * The text of a symlink a guest creates in a directory `depth` levels below the root it
 * resolved from: relative, and staying inside when read lexically from there (what cap-std
 * checks, so what wasmtime allows). Absolute or escaping: EPERM, nothing created.
 */
export function checkNewLinkTarget (target: string, depth: number): void {
  if (target.length === 0) fail(Errno.NOENT)
  if (target.includes('\0')) fail(Errno.INVAL)
  if (Buffer.byteLength(target) > PATH_MAX) fail(Errno.NAMETOOLONG)
  if (target.startsWith('/') || !staysBelow(target, depth)) fail(Errno.PERM)
}

/**
 * The text of a symlink as the guest may see it: relative targets that stay below the
 * jail root when read lexically from the link's directory (`depth` levels down), absolute
 * ones under the root rewritten as relative. Anything else is ENOTCAPABLE: not even the
 * name of an outside path leaks.
 */
export function visibleLinkText (dir: DirNode, depth: number, root: DirNode, target: string): string {
  if (target.startsWith('/')) {
    const rel = insideRoot(root, target)
    const fromDir = posix.relative(dir.realPath(), posix.join(root.realPath(), rel))
    return fromDir === '' ? '.' : fromDir
  }
  if (!staysBelow(target, depth)) fail(Errno.NOTCAPABLE)
  return target
}
