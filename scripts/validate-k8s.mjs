#!/usr/bin/env node
// Validates Kubernetes manifests against the Kubernetes JSON schemas (kubernetes-models,
// an ESM-only package: hence a script, which test/unit/deploy.test.ts runs). Prints
// {"validated": [...], "skipped": [...], "errors": [...]} as JSON; exit 1 on any error.
//   node scripts/validate-k8s.mjs [file.yaml ...]     (default: deploy/kubernetes/*.yaml)
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { Deployment } from 'kubernetes-models/apps/v1'
import { Service } from 'kubernetes-models/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'

const models = new Map([
  ['apps/v1/Deployment', Deployment],
  ['v1/Service', Service],
  ['autoscaling/v2/HorizontalPodAutoscaler', HorizontalPodAutoscaler],
  ['policy/v1/PodDisruptionBudget', PodDisruptionBudget],
  ['networking.k8s.io/v1/NetworkPolicy', NetworkPolicy]
])
// CRDs and tool configs have no schema here: the test checks their shape itself.
const skipped = new Set(['monitoring.coreos.com/v1/ServiceMonitor', 'kustomize.config.k8s.io/v1beta1/Kustomization'])

const dir = join(import.meta.dirname, '..', 'deploy', 'kubernetes')
const files = process.argv.length > 2 ? process.argv.slice(2) : readdirSync(dir).filter(f => f.endsWith('.yaml')).map(f => join(dir, f))
const out = { validated: [], skipped: [], errors: [] }
for (const file of files) {
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (doc.errors.length > 0) { out.errors.push(`${file}: ${doc.errors[0].message}`); continue }
    const obj = doc.toJS()
    const key = `${obj?.apiVersion}/${obj?.kind}`
    const Model = models.get(key)
    if (Model === undefined) {
      if (skipped.has(key)) out.skipped.push(`${key} ${obj.metadata?.name}`)
      else out.errors.push(`${file}: no schema for ${key}`)
      continue
    }
    try {
      new Model(obj).validate()
      out.validated.push(`${key} ${obj.metadata?.name}`)
    } catch (err) {
      out.errors.push(`${file}: ${key}: ${err.message}`)
    }
  }
}
process.stdout.write(JSON.stringify(out) + '\n')
process.exit(out.errors.length > 0 ? 1 : 0)
