// Conditional writes over HTTP (DATA_DIR registry; the PostgreSQL one is in
// test/e2e/replicas.test.ts): ETag on reads and writes, If-Match on PUT and DELETE.
import { buildTestApp, removeDir, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { withCustomSection } from '../helpers/client'
import { watFixture } from '../helpers/fixtures'
import { sha } from '../../src/registry/store'

let t: TestApp
beforeEach(async () => { t = await buildTestApp() })
afterEach(async () => { await t.close(); removeDir(t.dataDir) })

test('ETag is the sha256; If-Match with a stale one is 412 and changes nothing; the current one or * passes', async () => {
  const v1 = await watFixture('echo')
  const v2 = withCustomSection(v1, Buffer.from('v2'))
  const created = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(v1, { name: 'cond' }) })
  expect(created.statusCode).toBe(201)
  expect(created.headers.etag).toBe(`"${sha(v1)}"`)
  expect((await t.app.inject({ method: 'GET', url: '/plugins/cond' })).headers.etag).toBe(`"${sha(v1)}"`)

  const body = uploadBody(v2)
  const stale = await t.app.inject({ method: 'PUT', url: '/plugins/cond', payload: body.payload, headers: { ...body.headers, 'if-match': `"${'0'.repeat(64)}"` } })
  expect(stale.statusCode).toBe(412)
  expect(stale.json()).toMatchObject({ code: 'PRECONDITION_FAILED', details: { sha256: sha(v1) } })
  expect((await t.app.inject({ method: 'GET', url: '/plugins/cond' })).json().sha256).toBe(sha(v1))

  const weak = await t.app.inject({ method: 'PUT', url: '/plugins/cond', payload: body.payload, headers: { ...body.headers, 'if-match': `W/"${sha(v1)}"` } })
  expect(weak.statusCode).toBe(412)
  const ok = await t.app.inject({ method: 'PUT', url: '/plugins/cond', payload: body.payload, headers: { ...body.headers, 'if-match': `"${'1'.repeat(64)}", "${sha(v1)}"` } })
  expect(ok.statusCode).toBe(200)
  expect(ok.headers.etag).toBe(`"${sha(v2)}"`)

  expect((await t.app.inject({ method: 'DELETE', url: '/plugins/cond', headers: { 'if-match': `"${sha(v1)}"` } })).statusCode).toBe(412)
  expect((await t.app.inject({ method: 'DELETE', url: '/plugins/cond', headers: { 'if-match': 'no-quotes' } })).json().code).toBe('INVALID_REQUEST')
  expect((await t.app.inject({ method: 'DELETE', url: '/plugins/cond', headers: { 'if-match': '*' } })).statusCode).toBe(204)
  expect((await t.app.inject({ method: 'DELETE', url: '/plugins/cond', headers: { 'if-match': '*' } })).statusCode).toBe(404)
})
