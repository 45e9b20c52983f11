// What is wrong with bytes that are not JSON, for the INVALID_INPUT message: the position, in
// V8's words ("... in JSON at position 8 (line 1 column 9)"). Only called once the fast
// validating scan (abi-json.ts isJson) has refused the input, so the hot path never pays it.
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Why `bytes` are not JSON, with the position where V8 says so. */
export function jsonProblem (bytes: Uint8Array): string {
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return 'not valid UTF-8'
  }
  if (text.trim() === '') return 'the body is empty'
  try {
    JSON.parse(text)
  } catch (err) {
    return (err as Error).message
  }
  // JSON.parse took what the scanner refused (it never should): say so without a position.
  return 'refused by the JSON scanner'
}
