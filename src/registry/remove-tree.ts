// Removing a tree a plugin built, whatever its shape. A guest can nest directories far past
// PATH_MAX (each level made through the fd of the one above), so a removal that names
// entries by their path from the top (fs.rm) fails with ENAMETOOLONG; and a call still
// running may add entries while the removal runs, so one pass may meet ENOTEMPTY.
//
// So the tree is first moved into a holder directory of ours (one rename: from then on no
// new plugin can see it under its old name), then flattened: every directory is opened
// (O_DIRECTORY | O_NOFOLLOW), its files and symlinks are unlinked and its subdirectories
// renamed up into the holder, so nothing is ever deeper than holder/N/name and every path
// stays short, at any depth. Entries that appear meanwhile are taken by the next pass.
import { randomBytes } from 'node:crypto'
import { constants, existsSync } from 'node:fs'
import { mkdir, open, readdir, rename, rm, rmdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW | constants.O_NONBLOCK
/** Passes over the holder before giving up (a writer that never stops). */
const PASSES = 50
/** Pause between passes that found entries added meanwhile, in ms. */
const PASS_PAUSE_MS = 20

const procFds = existsSync('/proc/self/fd')

const code = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code

/**
 * Moves `parent/name` into a fresh holder under `scratch` (same file system) and returns the
 * holder, or undefined when there was nothing to move.
 */
export async function setAside (parent: string, name: string, scratch: string): Promise<string | undefined> {
  const holder = join(scratch, `remove-${randomBytes(6).toString('hex')}`)
  await mkdir(holder)
  try {
    await rename(join(parent, name), join(holder, '0'))
    return holder
  } catch (err) {
    await rmdir(holder).catch(() => {})
    if (code(err) === 'ENOENT') return undefined
    throw err
  }
}

/** Removes a holder made by setAside (or any directory), at any depth. */
export async function removeHolder (holder: string): Promise<void> {
  if (!procFds) {
    await rm(holder, { recursive: true, force: true })
    return
  }
  let next = 1_000_000 // names of ours, above the holder's own
  for (let pass = 0; pass < PASSES; pass++) {
    let queue: string[]
    try {
      queue = await readdir(holder)
    } catch (err) {
      if (code(err) === 'ENOENT') return
      throw err
    }
    for (let name = queue.pop(); name !== undefined; name = queue.pop()) {
      const path = join(holder, name)
      const handle = await open(path, DIR_FLAGS).catch((err: unknown) => {
        // Not a directory (a file or a symlink): unlinked as it is.
        if (code(err) === 'ENOTDIR' || code(err) === 'ELOOP') return undefined
        if (code(err) === 'ENOENT') return null
        throw err
      })
      if (handle === null) continue
      if (handle === undefined) {
        await unlink(path).catch(ignoreMissing)
        continue
      }
      try {
        const at = `/proc/self/fd/${handle.fd}`
        for (const entry of await readdir(at, { withFileTypes: true })) {
          if (!entry.isDirectory()) {
            await unlink(`${at}/${entry.name}`).catch(ignoreMissing)
            continue
          }
          const flat = String(next++)
          await rename(`${at}/${entry.name}`, join(holder, flat)).then(() => queue.push(flat), ignoreMissing)
        }
      } finally {
        await handle.close()
      }
      // ENOTEMPTY: a writer added an entry since the listing; the next pass takes it.
      await rmdir(path).catch((err: unknown) => { if (code(err) !== 'ENOTEMPTY') ignoreMissing(err) })
    }
    try {
      await rmdir(holder)
      return
    } catch (err) {
      if (code(err) === 'ENOENT') return
      if (code(err) !== 'ENOTEMPTY') throw err
    }
    await new Promise(resolve => setTimeout(resolve, PASS_PAUSE_MS))
  }
  throw new Error(`could not empty ${holder} in ${PASSES} passes: something keeps writing into it`)
}

/** Removes `parent/name` at any depth: set aside first, then emptied. */
export async function removeTree (parent: string, name: string, scratch: string): Promise<void> {
  const holder = await setAside(parent, name, scratch)
  if (holder !== undefined) await removeHolder(holder)
}

function ignoreMissing (err: unknown): void {
  if (code(err) !== 'ENOENT') throw err
}
