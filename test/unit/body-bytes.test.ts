// The execute route's body reader (src/server/body-bytes.ts): one buffer, the right kind, the
// limits fastify's own parser applies.
import { PassThrough } from 'node:stream'
import { readBodyBytes } from '../../src/server/body-bytes'
import { SHARE_FROM_BYTES } from '../../src/workers/dispatch'

async function read (pieces: Buffer[], contentLength: number | undefined, limit = 1 << 20, fail?: Error): Promise<Uint8Array> {
  const stream = new PassThrough()
  const result = new Promise<Uint8Array>((resolve, reject) => {
    readBodyBytes(stream, contentLength === undefined ? undefined : String(contentLength), limit, (err, body) => { if (err !== null) reject(err); else resolve(body as Uint8Array) })
  })
  for (const p of pieces) stream.write(p)
  if (fail !== undefined) stream.destroy(fail); else stream.end()
  return result
}

const bytes = (n: number, seed = 7): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * seed) & 0xff))
const split = (b: Buffer, size: number): Buffer[] => Array.from({ length: Math.ceil(b.length / size) }, (_, i) => b.subarray(i * size, (i + 1) * size))

test('a small declared body: a buffer of its own, exactly its length (postMessage copies a view\'s whole buffer)', async () => {
  const body = bytes(100)
  const got = await read(split(body, 30), 100)
  expect(Buffer.from(got).equals(body)).toBe(true)
  expect(got.buffer).toBeInstanceOf(ArrayBuffer)
  expect(got.buffer.byteLength).toBe(100)
})

test('shared from SHARE_FROM_BYTES exactly; one byte less is owned', async () => {
  expect((await read([bytes(SHARE_FROM_BYTES)], SHARE_FROM_BYTES)).buffer).toBeInstanceOf(SharedArrayBuffer)
  expect((await read([bytes(SHARE_FROM_BYTES - 1)], SHARE_FROM_BYTES - 1)).buffer).toBeInstanceOf(ArrayBuffer)
})

test('a large declared body: shared memory, exactly its length', async () => {
  const body = bytes(SHARE_FROM_BYTES + 5)
  const got = await read(split(body, 16_384), body.length)
  expect(Buffer.from(got).equals(body)).toBe(true)
  expect(got.buffer).toBeInstanceOf(SharedArrayBuffer)
  expect(got.byteLength).toBe(body.length)
})

test('chunked bodies (no content-length) grow as they come: small ones cut to an owned buffer, large ones shared', async () => {
  for (const n of [0, 1, 16 * 1024, 16 * 1024 + 1, SHARE_FROM_BYTES - 1, 3 * SHARE_FROM_BYTES + 11]) {
    const body = bytes(n, 13)
    const got = await read(split(body, 5000), undefined)
    expect(got.byteLength).toBe(n)
    expect(Buffer.from(got).equals(body)).toBe(true)
    if (got.buffer instanceof ArrayBuffer) expect(got.buffer.byteLength).toBe(n)
  }
})

test('limits: declared over the limit refused before reading; received over it refused at once; a short body is a content-length error; a stream error is a 400', async () => {
  await expect(read([], 2000, 1000)).rejects.toMatchObject({ code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
  await expect(read(split(bytes(1500), 100), undefined, 1000)).rejects.toMatchObject({ code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
  await expect(read([bytes(50)], 100)).rejects.toMatchObject({ code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' })
  // At the limit passes; one byte over does not, declared or received.
  expect((await read([bytes(1000)], 1000, 1000)).byteLength).toBe(1000)
  expect((await read(split(bytes(1000), 300), undefined, 1000)).byteLength).toBe(1000)
  await expect(read([], 1001, 1000)).rejects.toMatchObject({ code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
  await expect(read(split(bytes(1001), 300), undefined, 1000)).rejects.toMatchObject({ code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
  await expect(read([bytes(10)], undefined, 1000, new Error('aborted'))).rejects.toMatchObject({ message: 'aborted', statusCode: 400 })
})
