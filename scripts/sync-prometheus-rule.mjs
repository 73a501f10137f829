#!/usr/bin/env node
// Writes deploy/k8s/base/prometheus-rule.yaml from deploy/prometheus/alerts.yml: the Kubernetes
// PrometheusRule carries the same groups (test/deploy/alerts.test.ts checks they are equal). Run it
// after editing the alerts: `npm run deploy:rules`.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { groups } = parse(readFileSync(join(root, "deploy/prometheus/alerts.yml"), "utf8"));
const rule = {
  apiVersion: "monitoring.coreos.com/v1",
  kind: "PrometheusRule",
  metadata: { name: "l2flow" },
  spec: { groups },
};
const head =
  "# Prometheus operator: l2flow's alerting rules, the groups of deploy/prometheus/alerts.yml, written by\n" +
  '# `npm run deploy:rules` (a test keeps them equal). What each alert means and what to do:\n# docs/operations.md, "Alerts".\n';
const out = join(root, "deploy/k8s/base/prometheus-rule.yaml");
writeFileSync(out, head + stringify(rule, { lineWidth: 0 }));
console.log(`wrote ${out} (${groups.reduce((n, g) => n + g.rules.length, 0)} rules)`);
