// deploy/: the Kubernetes manifests validate against the Kubernetes schemas (kubernetes-models,
// through scripts/validate-k8s.mjs), hold together (selectors, ports, secrets, probes,
// drain time), the ServiceMonitor (a CRD, no schema there) has the shape the Prometheus
// Operator reads, and every expression of the Grafana dashboard names only metrics the
// service exports.
import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { loadConfig } from '../../src/config'
import { createMetrics } from '../../src/server/metrics'
import { removeDir, tempDir } from '../helpers/build-app'
import { exportedNames, metricNames } from '../helpers/promql'

const ROOT = resolve(__dirname, '..', '..')
const K8S = join(ROOT, 'deploy', 'kubernetes')
const NODE = process.execPath

type Obj = Record<string, any>

function manifests (): Obj[] {
  return readdirSync(K8S).filter(f => f.endsWith('.yaml')).flatMap(f => parseAllDocuments(readFileSync(join(K8S, f), 'utf8')).map(d => d.toJS() as Obj))
}
const byKind = (kind: string): Obj => {
  const found = manifests().find(m => m.kind === kind)
  if (found === undefined) throw new Error(`no ${kind} in deploy/kubernetes`)
  return found
}

function validate (files: string[] = []): { code: number, out: { validated: string[], skipped: string[], errors: string[] } } {
  try {
    return { code: 0, out: JSON.parse(execFileSync(NODE, [join(ROOT, 'scripts', 'validate-k8s.mjs'), ...files], { encoding: 'utf8' })) }
  } catch (err) {
    const e = err as { status: number, stdout: string }
    return { code: e.status, out: JSON.parse(e.stdout) }
  }
}

test('every manifest validates against the Kubernetes schemas', () => {
  const { code, out } = validate()
  expect(out.errors).toEqual([])
  expect(code).toBe(0)
  expect(out.validated.map(v => v.split(' ')[0]).sort()).toEqual([
    'apps/v1/Deployment', 'autoscaling/v2/HorizontalPodAutoscaler', 'networking.k8s.io/v1/NetworkPolicy', 'policy/v1/PodDisruptionBudget', 'v1/Service'])
})

test('the validator refuses a manifest that breaks the schema (it is not a no-op)', () => {
  const dir = tempDir('wph-k8s-')
  try {
    const broken = join(dir, 'broken.yaml')
    writeFileSync(broken, 'apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: x }\nspec:\n  replicas: two\n  selector: {}\n  template: { spec: { containers: [{ image: x }] } }\n')
    const { code, out } = validate([broken])
    expect(code).toBe(1)
    expect(out.errors.join('\n')).toMatch(/replicas|name/)
  } finally {
    removeDir(dir)
  }
})

test('the Deployment: probes, resources, non-root, read-only root with emptyDirs, secrets, drain time', () => {
  const deployment = byKind('Deployment')
  const pod = deployment.spec.template.spec
  const [container] = pod.containers as Obj[]
  expect(container).toBeDefined()
  const c = container as Obj
  expect(c.livenessProbe.httpGet.path).toBe('/healthz')
  expect(c.readinessProbe.httpGet.path).toBe('/readyz')
  expect(c.resources.requests.cpu).toBeDefined()
  expect(c.resources.limits.memory).toBeDefined()
  expect(pod.securityContext.runAsNonRoot).toBe(true)
  expect(pod.securityContext.runAsUser).toBe(1000) // the image's `node` user
  expect(c.securityContext.readOnlyRootFilesystem).toBe(true)
  expect(c.securityContext.allowPrivilegeEscalation).toBe(false)
  const env = new Map((c.env as Obj[]).map(e => [e.name, e]))
  for (const secret of ['REGISTRY_URL', 'AUTH_TOKEN']) expect(env.get(secret)?.valueFrom?.secretKeyRef?.key).toBe(secret)
  // Every writable path is an emptyDir: DATA_DIR and /tmp.
  const volumes = new Map((pod.volumes as Obj[]).map(v => [v.name, v]))
  const mounts = new Map((c.volumeMounts as Obj[]).map(m => [m.mountPath, m.name]))
  expect(volumes.get(mounts.get(env.get('DATA_DIR')?.value))?.emptyDir).toBeDefined()
  expect(volumes.get(mounts.get('/tmp'))?.emptyDir).toBeDefined()
  // The configuration the pod gets is valid.
  const config = loadConfig(Object.fromEntries((c.env as Obj[]).filter(e => e.value !== undefined).map(e => [e.name, String(e.value)])))
  // Drain: a call may wait QUEUE_TIMEOUT_MS, then run MAX_TIMEOUT_MS; the preStop pause comes first.
  const preStopSeconds = 5
  expect(pod.terminationGracePeriodSeconds).toBeGreaterThan((config.queueTimeoutMs + config.maxTimeoutMs) / 1000 + preStopSeconds)
  expect(c.lifecycle.preStop.exec.command.join(' ')).toContain(String(preStopSeconds * 1000))
})

test('Service, HPA, PDB, NetworkPolicy and ServiceMonitor point at the Deployment and its port', () => {
  const deployment = byKind('Deployment')
  const labels = deployment.spec.template.metadata.labels as Record<string, string>
  const selects = (selector: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v)
  const service = byKind('Service')
  expect(selects(service.spec.selector)).toBe(true)
  const containerPort = (deployment.spec.template.spec.containers[0].ports as Obj[])[0] as Obj
  expect(service.spec.ports[0].targetPort).toBe(containerPort.name)
  const hpa = byKind('HorizontalPodAutoscaler')
  expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: deployment.metadata.name })
  expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2)
  expect(selects(byKind('PodDisruptionBudget').spec.selector.matchLabels)).toBe(true)
  const policy = byKind('NetworkPolicy')
  expect(selects(policy.spec.podSelector.matchLabels)).toBe(true)
  expect(policy.spec.ingress[0].ports[0].port).toBe(containerPort.containerPort)
  // ServiceMonitor (monitoring.coreos.com/v1): its shape, checked here since it is a CRD.
  const monitor = byKind('ServiceMonitor')
  expect(monitor.apiVersion).toBe('monitoring.coreos.com/v1')
  expect(typeof monitor.metadata.name).toBe('string')
  expect(Object.keys(monitor.spec).sort()).toEqual(['endpoints', 'selector'])
  expect(monitor.spec.selector.matchLabels).toEqual(service.metadata.labels)
  expect(monitor.spec.endpoints).toHaveLength(1)
  const endpoint = monitor.spec.endpoints[0] as Obj
  expect(Object.keys(endpoint).every(k => ['port', 'path', 'interval', 'scrapeTimeout', 'scheme'].includes(k))).toBe(true)
  expect(endpoint.port).toBe(service.spec.ports[0].name)
  expect(endpoint.path).toBe('/metrics')
  for (const d of [endpoint.interval, endpoint.scrapeTimeout]) expect(d).toMatch(/^[0-9]+(ms|s|m|h)$/)
})

test('every expression of the Grafana dashboard names only metrics the service exports', async () => {
  // One extractor for the dashboard and the alert rules (test/integration/observability.test.ts).
  const exported = exportedNames(await createMetrics(() => undefined).registry.metrics())
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'wasm-plugin-host.json'), 'utf8')) as { panels: Array<{ title: string, targets?: Array<{ expr: string }> }>, templating: { list: Array<{ query: unknown }> } }
  const expressions = dashboard.panels.flatMap(p => (p.targets ?? []).map(t => ({ where: p.title, expr: t.expr })))
  for (const v of dashboard.templating.list) {
    const m = typeof v.query === 'string' ? /^label_values\((.*),\s*\w+\)$/.exec(v.query) : null
    if (m !== null) expressions.push({ where: 'variable', expr: m[1] as string })
  }
  expect(expressions.length).toBeGreaterThan(10)
  const unknown: string[] = []
  for (const { where, expr } of expressions) {
    const names = metricNames(expr)
    if (names.length === 0) unknown.push(`${where}: no metric in ${expr}`)
    for (const name of names) if (!exported.has(name)) unknown.push(`${where}: ${name}`)
  }
  expect(unknown).toEqual([])
  // What the dashboard must show (the list), by the metrics that carry it.
  const all = expressions.map(e => e.expr).join('\n')
  for (const needed of ['plugin_executions_total', 'plugin_execution_duration_seconds_bucket', 'plugin_queue_wait_seconds_bucket', 'worker_terminations_total', 'plugin_throttled', 'registry_sync_seconds_bucket', 'registry_connected', 'by (instance)']) {
    expect(all).toContain(needed)
  }
  // and the check itself catches a name the service does not export
  expect(metricNames('sum(rate(plugin_executionz_total{a="b"}[5m]))')).toEqual(['plugin_executionz_total'])
})
