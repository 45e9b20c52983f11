// The on-disk registry: content-addressed module bytes and one descriptor file per plugin.
// Every write is atomic (temp file, fsync, rename, fsync the directory) and lands before
// the client's 2xx, so a crash leaves either the old state or the new, never half of one.
//
//   DATA_DIR/modules/<sha256>.wasm   the uploaded bytes, as uploaded
//   DATA_DIR/plugins/<name>.json     the descriptor (+ manifest) of each plugin
//   DATA_DIR/volumes/<name>/         the plugin's private `@plugin` volume
//   DATA_DIR/tmp/                    in-progress writes and volumes being removed; swept at start
//   DATA_DIR/quarantine/<name>-<ms>/ a plugin that failed to load at start: its descriptor.json
//                                    and volume/, kept for the operator, out of any plugin's reach
//
// A volume holds what a plugin made, which may be a tree too deep for any path: volumes and
// everything under tmp/ are removed through directory fds (remove-tree.ts), and a volume that
// cannot be removed is logged and left in tmp/, never a reason to fail a request or a start.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { serviceError } from '../errors'
import { removeHolder, removeTree, setAside } from './remove-tree'

const SHA256 = /^[0-9a-f]{64}$/

function isNoSpace (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}

/** Where the store reports what it could not clean up (it carries on regardless). */
export type StoreWarn = (msg: string, err?: unknown) => void

export class PluginStore {
  readonly #dir: string
  readonly #modules: string
  readonly #plugins: string
  readonly #volumes: string
  readonly #tmp: string
  readonly #quarantine: string
  readonly #warn: StoreWarn

  constructor (dataDir: string, warn: StoreWarn = () => {}) {
    this.#dir = dataDir
    this.#modules = join(dataDir, 'modules')
    this.#plugins = join(dataDir, 'plugins')
    this.#volumes = join(dataDir, 'volumes')
    this.#tmp = join(dataDir, 'tmp')
    this.#quarantine = join(dataDir, 'quarantine')
    this.#warn = warn
  }

  /** Creates the layout and sweeps what a crash or an interrupted removal left in tmp/. */
  async init (): Promise<void> {
    for (const d of [this.#dir, this.#modules, this.#plugins, this.#volumes, this.#tmp]) await mkdir(d, { recursive: true })
    // Emptied rather than removed and made again: on a full disk a new directory may not fit,
    // and the service must still start (and serve, and delete). What cannot be removed is
    // logged and left: start-up never fails because of what a plugin wrote.
    for (const entry of await readdir(this.#tmp)) {
      try {
        if (entry.startsWith('remove-')) await removeHolder(join(this.#tmp, entry))
        else await removeTree(this.#tmp, entry, this.#tmp)
      } catch (err) {
        this.#warn(`could not remove ${join(this.#tmp, entry)}; left for the next start`, err)
      }
    }
  }

  /**
   * Writes `bytes` to `dir/file` atomically and durably. A full disk before the rename throws
   * INSUFFICIENT_STORAGE, and then nothing was written; after the rename the new content is
   * in place, and an error (of the directory fsync) is not a "nothing was written".
   */
  async #atomicWrite (dir: string, file: string, bytes: Uint8Array): Promise<void> {
    const tmp = join(this.#tmp, `${file}.${randomBytes(6).toString('hex')}`)
    try {
      const fh = await open(tmp, 'wx', 0o600)
      try {
        await fh.writeFile(bytes)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, join(dir, file))
    } catch (err) {
      await rm(tmp, { force: true })
      if (isNoSpace(err)) throw serviceError('INSUFFICIENT_STORAGE')
      throw err
    }
    await fsyncDir(dir)
  }

  async putModule (sha256: string, bytes: Uint8Array): Promise<void> {
    if (!SHA256.test(sha256)) throw new Error(`bad module hash ${sha256}`)
    try {
      const existing = await readFile(join(this.#modules, `${sha256}.wasm`))
      if (sha(existing) === sha256) return
    } catch { /* not there yet */ }
    await this.#atomicWrite(this.#modules, `${sha256}.wasm`, bytes)
  }

  /** Reads module bytes and checks them against their address, so a corrupt file is never run. */
  async readModule (sha256: string): Promise<Buffer> {
    if (!SHA256.test(sha256)) throw new Error(`bad module hash ${sha256}`)
    const bytes = await readFile(join(this.#modules, `${sha256}.wasm`))
    if (sha(bytes) !== sha256) throw new Error(`module ${sha256} is corrupt on disk`)
    return bytes
  }

  async putDescriptor (name: string, record: unknown): Promise<void> {
    await this.#atomicWrite(this.#plugins, `${name}.json`, Buffer.from(JSON.stringify(record, null, 2)))
  }

  /** The parsed descriptor record of `name`, or undefined when there is none. */
  async readDescriptor (name: string): Promise<unknown> {
    let text: string
    try {
      text = await readFile(join(this.#plugins, `${name}.json`), 'utf8')
    } catch (err) {
      ignoreMissing(err)
      return undefined
    }
    return JSON.parse(text)
  }

  async countDescriptors (): Promise<number> {
    return (await readdir(this.#plugins)).filter(f => f.endsWith('.json')).length
  }

  async deleteDescriptor (name: string): Promise<void> {
    await unlink(join(this.#plugins, `${name}.json`)).catch(ignoreMissing)
    await fsyncDir(this.#plugins)
  }

  /**
   * Every descriptor on disk, parsed; an unreadable one is reported, not fatal, and so is one
   * over `maxBytes` (not read at all: parsing it could exhaust the heap).
   */
  async listDescriptors (maxBytes = Infinity): Promise<Array<{ name: string, record?: unknown, error?: Error }>> {
    const out: Array<{ name: string, record?: unknown, error?: Error }> = []
    for (const file of (await readdir(this.#plugins)).sort()) {
      if (!file.endsWith('.json')) continue
      const name = file.slice(0, -5)
      try {
        const { size } = await stat(join(this.#plugins, file))
        if (size > maxBytes) throw new Error(`descriptor file of ${size} bytes; at most ${maxBytes} are read`)
        out.push({ name, record: JSON.parse(await readFile(join(this.#plugins, file), 'utf8')) })
      } catch (err) {
        out.push({ name, error: err as Error })
      }
    }
    return out
  }

  /** Removes module files no descriptor references (after a delete, a replace or a crash). */
  async collectModules (referenced: ReadonlySet<string>): Promise<number> {
    let removed = 0
    for (const file of await readdir(this.#modules)) {
      const hash = file.replace(/\.wasm$/, '')
      if (!referenced.has(hash)) {
        await unlink(join(this.#modules, file)).catch(ignoreMissing)
        removed++
      }
    }
    return removed
  }

  /** The host directory of a plugin's private `@plugin` volume (created on demand). */
  volumePath (name: string): string {
    return join(this.#volumes, name)
  }

  async ensureVolume (name: string): Promise<string> {
    const path = this.volumePath(name)
    try {
      await mkdir(path, { recursive: true })
    } catch (err) {
      if (isNoSpace(err)) throw serviceError('INSUFFICIENT_STORAGE')
      throw err
    }
    return path
  }

  /**
   * Removes the volumes of plugins that have no descriptor on disk. A delete commits when its
   * descriptor is unlinked and removes the volume after that: a crash in between must not
   * hand the deleted plugin's files to the next plugin of the same name.
   */
  async sweepVolumes (described: ReadonlySet<string>): Promise<number> {
    let removed = 0
    for (const name of await readdir(this.#volumes)) {
      if (described.has(name)) continue
      try {
        await this.removeVolume(name)
        removed++
      } catch (err) {
        this.#warn(`could not remove the volume of '${name}', which has no plugin`, err)
      }
    }
    return removed
  }

  /**
   * Removes a plugin's volume. It is first moved aside into tmp/ (one rename, so a new plugin
   * of that name never sees any of it), then emptied through directory fds; an error while
   * emptying is logged and what is left stays in tmp/ for the next start. Throws only when
   * the volume could not be moved aside.
   */
  async removeVolume (name: string): Promise<void> {
    const holder = await setAside(this.#volumes, name, this.#tmp)
    if (holder === undefined) return
    try {
      await removeHolder(holder)
    } catch (err) {
      this.#warn(`could not finish removing the volume of '${name}'; left in ${holder} for the next start`, err)
    }
  }

  /**
   * Moves a plugin that cannot be loaded out of the registry: its descriptor and its volume go
   * to DATA_DIR/quarantine/<name>-<ms>/ (descriptor.json, volume/), kept for the operator.
   * A new plugin of that name then starts with nothing of the old one's. Returns the place.
   */
  async quarantine (name: string): Promise<string> {
    const place = join(this.#quarantine, `${name}-${Date.now()}`)
    await mkdir(place, { recursive: true })
    await rename(this.volumePath(name), join(place, 'volume')).catch(ignoreMissing)
    await rename(join(this.#plugins, `${name}.json`), join(place, 'descriptor.json')).catch(ignoreMissing)
    await fsyncDir(this.#plugins)
    await fsyncDir(place)
    return place
  }
}

export function sha (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

async function fsyncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

function ignoreMissing (err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
}
