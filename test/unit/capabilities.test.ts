import { deniedImports, WASI_PREVIEW1_FUNCTIONS } from '../../src/sandbox/capabilities'
import type { ImportEntry } from '../../src/sandbox/binary'
import { WASI_SIGNATURES } from '../../src/sandbox/wasi/signatures'

const fd = (name: string): ImportEntry => ({ module: 'wasi_snapshot_preview1', name, kind: 'func', type: { params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'] } })

describe('deniedImports', () => {
  test('memory imports are always satisfied (they become the host memory)', () => {
    expect(deniedImports([{ module: 'env', name: 'memory', kind: 'memory', limits: { min: 1 } }], { wasi: false })).toEqual([])
  })

  test('WASI functions need the grant; unknown WASI names never pass', () => {
    expect(deniedImports([fd('fd_write')], { wasi: true })).toEqual([])
    expect(deniedImports([fd('fd_write')], { wasi: false })).toEqual([
      expect.objectContaining({ module: 'wasi_snapshot_preview1', name: 'fd_write', reason: expect.stringMatching(/not granted/) })
    ])
    expect(deniedImports([fd('fd_evil')], { wasi: true })).toHaveLength(1)
    const wrongType: ImportEntry = { module: 'wasi_snapshot_preview1', name: 'fd_write', kind: 'func', type: { params: ['i64'], results: [] } }
    expect(deniedImports([wrongType], { wasi: true })[0]?.reason).toMatch(/witx/)
  })

  test('anything else is denied, each listed', () => {
    const denied = deniedImports([
      { module: 'env', name: 'system', kind: 'func' },
      { module: 'env', name: 'g', kind: 'global' },
      { module: 'env', name: 't', kind: 'table' }
    ], { wasi: true })
    expect(denied.map(d => d.name)).toEqual(['system', 'g', 't'])
  })

  test('the allow list is the whole preview1 function set', () => {
    expect(WASI_PREVIEW1_FUNCTIONS.size).toBe(46)
    expect([...WASI_PREVIEW1_FUNCTIONS].sort()).toEqual(Object.keys(WASI_SIGNATURES).sort())
  })
})
