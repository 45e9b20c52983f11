// A tree deeper than any path: what a plugin builds by making each directory through the fd of
// its parent (mkdirat + openat), so that no single path it uses is long while the tree is.
import { closeSync, constants, mkdirSync, openSync, writeFileSync } from 'node:fs'

/**
 * Makes `depth` nested directories named with `length` characters under `dir` (created if
 * missing), each through its parent's `/proc/self/fd` path, with a `fileBytes`-byte file `f` in
 * each level. 20 x 250 characters: a 5,000-byte path, past PATH_MAX (4,096).
 */
export function plantDeepTree (dir: string, depth = 20, length = 250, fileBytes = 10): void {
  mkdirSync(dir, { recursive: true })
  const name = 'd'.repeat(length)
  let fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    for (let i = 0; i < depth; i++) {
      writeFileSync(`/proc/self/fd/${fd}/f`, 'x'.repeat(fileBytes))
      mkdirSync(`/proc/self/fd/${fd}/${name}`)
      const next = openSync(`/proc/self/fd/${fd}/${name}`, constants.O_RDONLY | constants.O_DIRECTORY)
      closeSync(fd)
      fd = next
    }
  } finally {
    closeSync(fd)
  }
}
