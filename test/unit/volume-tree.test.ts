// Walking and removing a volume a plugin built: at any depth (a tree far past PATH_MAX, made
// through directory fds as a guest makes it), never following a symlink out, and with a writer
// adding entries while the removal runs.
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { removeHolder, removeTree, setAside } from '../../src/registry/remove-tree'
import { plantDeepTree } from '../helpers/deep-tree'
import { measureVolume, measureVolumeAsync } from '../../src/sandbox/wasi/volume-usage'

let base: string

beforeEach(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), 'volume-tree-')))
})

afterEach(() => {
  rmSync(base, { recursive: true, force: true })
})

describe('measuring a volume', () => {
  test('a tree 20 levels of 250 characters deep (5,000-byte paths), sync and async alike', async () => {
    const volume = join(base, 'v')
    plantDeepTree(volume, 20, 250)
    writeFileSync(join(volume, 'top'), 'y'.repeat(100))
    const expected = { bytes: 20 * 10 + 100, entries: 20 * 2 + 1 }
    expect(measureVolume(volume)).toEqual(expected)
    await expect(measureVolumeAsync(volume)).resolves.toEqual(expected)
  })

  test('symlinks are counted as names and by their target\'s length, never followed; a tree over the limit is full', async () => {
    const volume = join(base, 'v')
    mkdirSync(join(volume, 'sub'), { recursive: true })
    const outside = join(base, 'outside')
    mkdirSync(outside)
    writeFileSync(join(outside, 'big'), Buffer.alloc(10_000))
    symlinkSync(outside, join(volume, 'sub', 'out'))
    // The link's own size (its target's length, as the WASI quota charges it), not the 10,000
    // bytes it points at.
    expect(measureVolume(volume)).toEqual({ bytes: Buffer.byteLength(outside), entries: 2 })
    expect(measureVolume(volume, 1).bytes).toBe(Infinity)
    await expect(measureVolumeAsync(volume, 1)).resolves.toMatchObject({ bytes: Infinity })
  })
})

describe('removing a tree', () => {
  test('a tree deeper than PATH_MAX goes, and a symlink in it is removed, not followed', async () => {
    const volumes = join(base, 'volumes')
    const scratch = join(base, 'tmp')
    mkdirSync(scratch)
    plantDeepTree(join(volumes, 'p'), 20, 250)
    const outside = join(base, 'outside')
    mkdirSync(outside)
    writeFileSync(join(outside, 'keep'), 'keep')
    symlinkSync(outside, join(volumes, 'p', 'out'))
    await removeTree(volumes, 'p', scratch)
    expect(readdirSync(volumes)).toEqual([])
    expect(readdirSync(scratch)).toEqual([])
    expect(readdirSync(outside)).toEqual(['keep'])
    await expect(removeTree(volumes, 'p', scratch)).resolves.toBeUndefined() // nothing there
  })

  test('entries added while the removal runs are taken by a later pass', async () => {
    const volumes = join(base, 'volumes')
    const scratch = join(base, 'tmp')
    mkdirSync(scratch)
    mkdirSync(join(volumes, 'p', 'd'), { recursive: true })
    for (let i = 0; i < 200; i++) writeFileSync(join(volumes, 'p', 'd', `f${i}`), '')
    const holder = await setAside(volumes, 'p', scratch)
    if (holder === undefined) throw new Error('nothing set aside')
    // A writer holding the directory open keeps adding to it for a while.
    const fd = openSync(join(holder, '0', 'd'), constants.O_RDONLY | constants.O_DIRECTORY)
    let n = 0
    const writer = setInterval(() => {
      try { mkdirSync(`/proc/self/fd/${fd}/late${n++}`) } catch { /* removed meanwhile */ }
    }, 1)
    const removing = removeHolder(holder)
    setTimeout(() => clearInterval(writer), 30)
    await removing
    clearInterval(writer)
    closeSync(fd)
    expect(existsSync(holder)).toBe(false)
    expect(readdirSync(scratch)).toEqual([])
  })
})
