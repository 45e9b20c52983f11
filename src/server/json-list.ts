// A JSON object holding one array, written item by item: `{"<key>":[<item>,<item>...]}`.
// GET /plugins answers with it instead of serializing the whole list into one string, whose
// size is what every plugin's descriptor adds up to (V8 refuses strings over ~512 MiB, and the
// heap holds the whole string and its copy while it is sent).
import { Readable } from 'node:stream'

/** A byte stream of `{"key": [...items]}`; each item is serialized when the response wants more. */
export function jsonListStream (key: string, items: readonly unknown[]): Readable {
  function * chunks (): Generator<string> {
    yield `{${JSON.stringify(key)}:[`
    for (let i = 0; i < items.length; i++) yield (i === 0 ? '' : ',') + JSON.stringify(items[i])
    yield ']}'
  }
  return Readable.from(chunks(), { objectMode: false })
}
