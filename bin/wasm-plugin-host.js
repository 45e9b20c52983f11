#!/usr/bin/env node
'use strict'
// The installed command (package.json "bin"; `npm link` puts it on PATH). `#!/usr/bin/env node`
// runs whatever `node` is first on PATH, often older than the Node 24 the service needs (a v20
// there fails on the first wasm feature or API it lacks, with a confusing error). So this file
// is kept to syntax any Node runs, and:
//   - on Node 24 it runs dist/cli.js in this process (the sandbox's V8 flags, --no-liftoff
//     among them, are set at run time), except `serve`, which is re-started with the flags
//     `npm start` uses, since --max-semi-space-size is read only when the heap is set up;
//   - on another Node it re-starts dist/cli.js on the Node 24 pinned in the package's own
//     node_modules (the npm package `node`) with those flags; without one it says what to do.
const childProcess = require('child_process')
const fs = require('fs')
const path = require('path')

const NEEDED_MAJOR = 24
const NODE_FLAGS = ['--no-liftoff', '--max-semi-space-size=16']
const root = path.resolve(__dirname, '..')
const cli = path.join(root, 'dist', 'cli.js')
const args = process.argv.slice(2)

function fail (message) {
  process.stderr.write('wasm-plugin-host: ' + message + '\n')
  process.exit(2)
}

function pinnedNode () {
  const candidates = [path.join(root, 'node_modules', 'node', 'bin', 'node')]
  try {
    // Installed as a dependency, the `node` package may be hoisted next to this one.
    candidates.push(path.join(path.dirname(require.resolve('node/package.json', { paths: [root] })), 'bin', 'node'))
  } catch (err) { /* not installed */ }
  for (const file of candidates) {
    try {
      fs.accessSync(file, fs.constants.X_OK)
      return file
    } catch (err) { /* next */ }
  }
  return undefined
}

if (!fs.existsSync(cli)) fail('dist/cli.js is missing: run `npm run build` in ' + root)

const major = Number(process.versions.node.split('.')[0])
let node = process.execPath
if (major !== NEEDED_MAJOR) {
  node = pinnedNode()
  if (node === undefined || process.env.WASM_PLUGIN_HOST_REEXEC === '1') {
    fail('needs Node.js ' + NEEDED_MAJOR + ' but runs on ' + process.version + ' (' + process.execPath + '), and the Node.js ' +
      NEEDED_MAJOR + ' pinned in the package (npm package `node`) is not installed: run `npm ci` in ' + root +
      ', or put Node.js ' + NEEDED_MAJOR + ' first on PATH')
  }
}

const flagsInForce = NODE_FLAGS.every(function (flag) { return process.execArgv.indexOf(flag) >= 0 })
if (node === process.execPath && (args[0] !== 'serve' || flagsInForce)) {
  require(cli).main(args)
} else {
  const env = Object.assign({}, process.env, { WASM_PLUGIN_HOST_REEXEC: '1' })
  const child = childProcess.spawn(node, NODE_FLAGS.concat([cli], args), { stdio: 'inherit', env })
  // The child shares the terminal (Ctrl-C reaches it directly); a signal sent to this process
  // alone (a supervisor's SIGTERM) is passed on, so `serve` drains its calls as usual.
  const forward = function (signal) { child.kill(signal) }
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP']
  signals.forEach(function (signal) { process.on(signal, forward) })
  child.on('error', function (err) { fail('cannot start ' + node + ': ' + err.message) })
  child.on('exit', function (code, signal) {
    signals.forEach(function (s) { process.removeListener(s, forward) })
    if (signal !== null) process.kill(process.pid, signal)
    else process.exit(code === null ? 1 : code)
  })
}
