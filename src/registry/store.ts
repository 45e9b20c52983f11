// The on-disk registry: content-addressed module bytes and one descriptor file per plugin.
// Every write is atomic (temp file, fsync, rename, fsync the directory) and lands before
// the client's 2xx, so a crash leaves either the old state or the new, never half of one.
//
//   DATA_DIR/modules/<sha256>.wasm   the uploaded bytes, as uploaded
//   DATA_DIR/plugins/<name>.json     the descriptor (+ manifest) of each plugin
//   DATA_DIR/volumes/<name>/         the plugin's private `@plugin` volume
//   DATA_DIR/tmp/                    in-progress writes; swept at start
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { serviceError } from '../errors'

const SHA256 = /^[0-9a-f]{64}$/

function isNoSpace (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}

export class PluginStore {
  readonly #dir: string
  readonly #modules: string
  readonly #plugins: string
  readonly #volumes: string
  readonly #tmp: string

  constructor (dataDir: string) {
    this.#dir = dataDir
    this.#modules = join(dataDir, 'modules')
    this.#plugins = join(dataDir, 'plugins')
    this.#volumes = join(dataDir, 'volumes')
    this.#tmp = join(dataDir, 'tmp')
  }

  /** Creates the layout and sweeps temp files a crash left behind. */
  async init (): Promise<void> {
    for (const d of [this.#dir, this.#modules, this.#plugins, this.#volumes, this.#tmp]) await mkdir(d, { recursive: true })
    // Emptied rather than removed and made again: on a full disk a new directory may not fit,
    // and the service must still start (and serve, and delete).
    for (const entry of await readdir(this.#tmp)) await rm(join(this.#tmp, entry), { recursive: true, force: true })
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

  /** Every descriptor on disk, parsed; an unreadable one is reported, not fatal. */
  async listDescriptors (): Promise<Array<{ name: string, record?: unknown, error?: Error }>> {
    const out: Array<{ name: string, record?: unknown, error?: Error }> = []
    for (const file of (await readdir(this.#plugins)).sort()) {
      if (!file.endsWith('.json')) continue
      const name = file.slice(0, -5)
      try {
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
      await this.removeVolume(name)
      removed++
    }
    return removed
  }

  async removeVolume (name: string): Promise<void> {
    // Renamed aside first so a half-deleted volume is never seen by a new plugin of that name.
    const aside = join(this.#tmp, `volume-${name}-${randomBytes(6).toString('hex')}`)
    try {
      await rename(this.volumePath(name), aside)
    } catch (err) {
      ignoreMissing(err)
      return
    }
    await rm(aside, { recursive: true, force: true })
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
