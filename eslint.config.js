'use strict'
const neostandard = require('neostandard')

module.exports = neostandard({
  ts: true,
  filesTs: ['**/*.mts'],
  ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.cache/**', 'examples/**/build/**']
})
