import { PluginVars } from '../../src/registry/plugin-vars'

const b = (s: string): Uint8Array => new TextEncoder().encode(s)
const asText = (vars: Array<[string, Uint8Array]>): Record<string, string> =>
  Object.fromEntries(vars.map(([k, v]) => [k, new TextDecoder().decode(v)]))

test('concurrent calls see the vars as they were at their start; writes apply in the order calls end', () => {
  const vars = new PluginVars()
  vars.apply('p', vars.snapshot('p').epoch, [['a', b('0')]], 1000)
  const first = vars.snapshot('p')
  const second = vars.snapshot('p')
  expect(asText(first.vars)).toEqual({ a: '0' })
  // The second call ends first, then the first: the first's write wins.
  vars.apply('p', second.epoch, [['a', b('2')], ['b', b('x')]], 1000)
  expect(asText(first.vars)).toEqual({ a: '0' })
  vars.apply('p', first.epoch, [['a', b('1')], ['b', null]], 1000)
  expect(asText(vars.snapshot('p').vars)).toEqual({ a: '1' })
})

test('a write past the limit is skipped; a clear starts a new epoch that old calls cannot write into', () => {
  const vars = new PluginVars()
  const s = vars.snapshot('p')
  expect(vars.apply('p', s.epoch, [['k', b('12345')], ['big', b('x'.repeat(20))]], 10)).toBe(1)
  expect(asText(vars.snapshot('p').vars)).toEqual({ k: '12345' })
  const old = vars.snapshot('p')
  vars.clear('p')
  expect(vars.apply('p', old.epoch, [['late', b('1')]], 1000)).toBe(0)
  expect(vars.snapshot('p').vars).toEqual([])
  expect(vars.snapshot('q').vars).toEqual([])
})
