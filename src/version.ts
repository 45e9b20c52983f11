// The package's version, read once from package.json (one directory above both src/ and
// dist/), for the build-info metric and the CLI's --version.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export const VERSION: string = (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version
