// Large execute bodies through the real service. A body is read straight into the buffer the
// worker reads (src/server/body-bytes.ts), shared with the worker from 64 KiB on. Before: a
// 16 MiB body was copied at each posting of its task, each copy took longer than the 50 ms
// after which a waiting task moves to another thread, and the call never ran (503 OVERLOADED
// at the queue timeout, the event loop busy copying the while).
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { removeDir } from '../helpers/build-app'
import { parseRawResponse, rawClient, sendUpload } from '../helpers/client'
import { watFixture } from '../helpers/fixtures'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

jest.setTimeout(120_000)

const MiB = 1024 * 1024
let server: RunningServer

beforeAll(async () => {
  server = await startServer({ WORKERS: '2', MAX_INPUT_BYTES: String(17 * MiB), QUEUE_TIMEOUT_MS: '20000', LOG_LEVEL: 'warn' })
  const echo = await watFixture('echo')
  const up = await sendUpload(server.url, 'POST', '/plugins', echo, { name: 'echo', limits: { memoryBytes: 64 * MiB, outputBytes: 16 * MiB, timeoutMs: 10_000 } })
  expect(up.status).toBe(201)
})

afterAll(async () => {
  await server.stop()
  removeDir(server.dataDir)
})

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** A JSON array of strings, `bytes` long exactly. */
function jsonOf (bytes: number): Buffer {
  const body = Buffer.alloc(bytes, 'a')
  body[0] = 0x5b // [
  body[1] = 0x22 // "
  body[bytes - 2] = 0x22
  body[bytes - 1] = 0x5d // ]
  return body
}

async function execute (body: Buffer | Readable, headers: Record<string, string> = {}): Promise<{ status: number, bytes: Buffer }> {
  const res = await request(`${server.url}/plugins/echo/execute`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers }, headersTimeout: 0, bodyTimeout: 0 })
  const chunks: Buffer[] = []
  for await (const chunk of res.body) chunks.push(chunk as Buffer)
  return { status: res.statusCode, bytes: Buffer.concat(chunks) }
}

test('a 16 MiB body runs, and comes back byte for byte', async () => {
  const body = jsonOf(16 * MiB)
  const answer = await execute(body)
  expect(answer.status).toBe(200)
  expect(answer.bytes.length).toBe(body.length)
  expect(sha(answer.bytes)).toBe(sha(body))
})

test('two 8 MiB bodies at once, on two threads: both run whole', async () => {
  const bodies = [jsonOf(8 * MiB), jsonOf(8 * MiB - 1)]
  const answers = await Promise.all(bodies.map(async b => execute(b)))
  for (const [i, a] of answers.entries()) {
    expect(a.status).toBe(200)
    expect(sha(a.bytes)).toBe(sha(bodies[i] as Buffer))
  }
})

test('a chunked body (no content-length) of any size is read whole; small and large', async () => {
  for (const size of [4, 1000, 70_000, 3 * MiB + 17]) {
    const body = jsonOf(size)
    async function * chunks (): AsyncIterable<Buffer> {
      for (let at = 0; at < body.length; at += 12_345) yield body.subarray(at, at + 12_345)
    }
    const answer = await execute(Readable.from(chunks()))
    expect(answer.status).toBe(200)
    expect(sha(answer.bytes)).toBe(sha(body))
  }
})

test('over MAX_INPUT_BYTES: 413 PAYLOAD_TOO_LARGE, declared (before any byte is read) or chunked (when the limit passes)', async () => {
  const head = 'POST /plugins/echo/execute HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n'
  const declared = await rawClient(server.url)
  declared.write(`${head}content-length: ${17 * MiB + 1}\r\n\r\n[`)
  await declared.closed
  const a = parseRawResponse(declared.received())
  expect(a?.status).toBe(413)
  expect(JSON.parse(a?.body ?? '').code).toBe('PAYLOAD_TOO_LARGE')

  const chunked = await rawClient(server.url)
  chunked.write(`${head}transfer-encoding: chunked\r\n\r\n`)
  const piece = Buffer.alloc(MiB, 'a')
  for (let sent = 0; sent <= 18 && chunked.received() === ''; sent++) {
    chunked.write(`${piece.length.toString(16)}\r\n`)
    chunked.write(piece)
    chunked.write('\r\n')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  await chunked.closed
  const b = parseRawResponse(chunked.received())
  expect(b?.status).toBe(413)
  expect(JSON.parse(b?.body ?? '').code).toBe('PAYLOAD_TOO_LARGE')
  // and the service goes on
  expect((await execute(jsonOf(100))).status).toBe(200)
})

test('an empty body is an empty input', async () => {
  const answer = await execute(Buffer.alloc(0))
  // echo returns its input: empty is not JSON, which the json ABI refuses as input
  expect(answer.status).toBe(400)
  expect(JSON.parse(answer.bytes.toString()).code).toBe('INVALID_INPUT')
})
