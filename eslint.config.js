'use strict'
const neostandard = require('neostandard')

module.exports = neostandard({
  ts: true,
  filesTs: ['**/*.mts'],
  ignores: ['dist/**', 'templates/**', 'node_modules/**', 'coverage/**', '.cache/**', 'examples/**/build/**']
})
