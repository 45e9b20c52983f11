// The metric names a PromQL expression reads, for tests that check dashboards and alert rules
// against what the service exports. Not a parser: strings, label matchers, ranges and
// grouping clauses are cut out, and what is left that is not a function or keyword is a name.
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])

export function metricNames (expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\w+/g, ' ')
  const names = new Set<string>()
  for (const m of stripped.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const name = m[1] as string
    if (m[2] !== undefined || KEYWORDS.has(name.toLowerCase())) continue
    names.add(name)
  }
  return [...names]
}

/** Names of the series families a /metrics exposition holds, histogram/summary parts included. */
export function exportedNames (exposition: string): Set<string> {
  const names = new Set<string>()
  for (const line of exposition.split('\n')) {
    const m = /^# TYPE (\S+) (\S+)/.exec(line)
    if (m === null) continue
    const [, name, type] = m as unknown as [string, string, string]
    names.add(name)
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s)
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s)
  }
  return names
}
