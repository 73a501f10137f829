#!/usr/bin/env node
// Validates the deployment files offline (CI runs it): docker-compose.yml against the compose schema
// (dclint), every object of both Kustomize overlays against the Kubernetes 1.27 schemas
// (kubernetes-models; KEDA's ScaledObject with @kubernetes-models/keda), the ServiceMonitor's and PrometheusRule's shapes
// by hand, and the NATS Helm values: the keys the chart needs and the same users and permissions as
// deploy/nats/auth.conf. Exits 1 with every problem listed.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const problems = [];
const ok = [];

class NotInstalled extends Error {}

function run(cmd, args) {
  try {
    return execFileSync(cmd, args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    if (err.code === "ENOENT")
      throw new NotInstalled(`${cmd} is not installed: it is needed to validate the deployment files`);
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${err.stdout ?? ""}${err.stderr ?? ""}`);
  }
}

// 1. docker-compose.yml: schema and errors (style rules off: key order is a matter of taste).
try {
  run(join(root, "node_modules/.bin/dclint"), [
    "docker-compose.yml",
    "--max-warnings",
    "0",
    "--disable-rule",
    "service-keys-order",
    "services-alphabetical-order",
    "top-level-properties-order",
    "require-quotes-in-ports",
  ]);
  ok.push("docker-compose.yml matches the compose specification");
} catch (err) {
  problems.push(err.message);
}

// 2. Kubernetes: render each overlay and validate every object. Without kubectl (it is not a Debian
// package) the base's files are validated as they are, and the overlays are reported as unchecked.
function baseWithoutKustomize() {
  const dir = join(root, "deploy/k8s/base");
  const k = parse(readFileSync(join(dir, "kustomization.yaml"), "utf8"));
  return k.resources.map((f) => readFileSync(join(dir, f), "utf8")).join("\n---\n");
}
const skipped = [];
const MODELS = {
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "apps/v1/StatefulSet": StatefulSet,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};
function checkServiceMonitor(o, where) {
  const eps = o.spec?.endpoints;
  if (!o.metadata?.name || !o.spec?.selector || !Array.isArray(eps) || eps.length === 0)
    problems.push(`${where}: ServiceMonitor needs metadata.name, spec.selector and spec.endpoints`);
  for (const e of eps ?? [])
    if (typeof e.port !== "string") problems.push(`${where}: ServiceMonitor endpoint without a named port`);
}
/** The operator's PrometheusRule: named groups of rules, each an alert with an expression and a severity. */
function checkPrometheusRule(o, where) {
  const groups = o.spec?.groups;
  if (!o.metadata?.name || !Array.isArray(groups) || groups.length === 0)
    problems.push(`${where}: PrometheusRule needs metadata.name and spec.groups`);
  for (const g of groups ?? []) {
    if (typeof g.name !== "string" || !Array.isArray(g.rules) || g.rules.length === 0)
      problems.push(`${where}: a rule group needs a name and rules`);
    for (const r of g.rules ?? [])
      if (typeof r.alert !== "string" || typeof r.expr !== "string" || typeof r.labels?.severity !== "string")
        problems.push(`${where}: rule ${r.alert ?? "?"} needs alert, expr and labels.severity`);
  }
}
for (const overlay of ["dev", "prod"]) {
  let text;
  let name = `overlay ${overlay}`;
  try {
    text = run("kubectl", ["kustomize", `deploy/k8s/overlays/${overlay}`]);
  } catch (err) {
    if (!(err instanceof NotInstalled)) {
      problems.push(err.message);
      continue;
    }
    if (overlay !== "dev") continue;
    skipped.push(`overlays dev and prod not rendered: ${err.message}; the base was validated as written`);
    text = baseWithoutKustomize();
    name = "base (unrendered)";
  }
  const kinds = new Map();
  for (const doc of parseAllDocuments(text)) {
    const o = doc.toJSON();
    if (o === null) continue;
    const key = `${o.apiVersion}/${o.kind}`;
    const where = `${name}: ${o.kind} ${o.metadata?.name}`;
    kinds.set(o.kind, (kinds.get(o.kind) ?? 0) + 1);
    if (key === "monitoring.coreos.com/v1/ServiceMonitor") {
      checkServiceMonitor(o, where);
      continue;
    }
    if (key === "monitoring.coreos.com/v1/PrometheusRule") {
      checkPrometheusRule(o, where);
      continue;
    }
    const Model = MODELS[key];
    if (Model === undefined) {
      problems.push(`${where}: no schema known for ${key}; add it to scripts/validate-deploy.mjs`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (err) {
      problems.push(`${where}: ${err.message}`);
    }
    const pod = o.spec?.template?.spec;
    if (pod !== undefined) {
      for (const c of pod.containers ?? []) {
        if (c.readinessProbe === undefined || c.livenessProbe === undefined)
          problems.push(`${where}: ${c.name} lacks probes`);
        if (c.resources?.limits === undefined) problems.push(`${where}: ${c.name} lacks resource limits`);
        if (c.securityContext?.allowPrivilegeEscalation !== false)
          problems.push(`${where}: ${c.name} may escalate privileges`);
      }
      if (pod.securityContext?.runAsNonRoot !== true) problems.push(`${where}: pods must run as non-root`);
    }
  }
  for (const k of [
    "Deployment",
    "StatefulSet",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "ScaledObject",
    "ServiceMonitor",
    "PrometheusRule",
    "ConfigMap",
  ])
    if (!kinds.has(k)) problems.push(`${name}: no ${k} rendered`);
  ok.push(`${name}: ${[...kinds].map(([k, n]) => `${n} ${k}`).join(", ")} valid`);
}

// 3. NATS Helm values: the chart's keys, and the users of auth.conf with the same permissions.
function authConfUsers() {
  const text = readFileSync(join(root, "deploy/nats/auth.conf"), "utf8").replace(/#.*$/gm, "");
  const users = {};
  for (const chunk of text.split(/\buser:\s*/).slice(1)) {
    const name = /^(\w+)/.exec(chunk)[1];
    const pub = /publish:\s*{\s*allow:\s*\[([^\]]*)\]/.exec(chunk);
    const sub = /subscribe:\s*{\s*allow:\s*\[([^\]]*)\]/.exec(chunk);
    const list = (m) => (m === null ? [] : [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]).sort());
    users[name] = {
      publish: list(pub),
      subscribe: list(sub),
      responses: /allow_responses:\s*true/.test(chunk.split(/\n\s*}\s*\n\s*{/)[0]),
    };
  }
  return users;
}
try {
  const values = parse(readFileSync(join(root, "deploy/nats/helm-values.yaml"), "utf8"));
  const need = [
    ["config.cluster.enabled", values.config?.cluster?.enabled === true],
    ["config.cluster.replicas = 3", values.config?.cluster?.replicas === 3],
    ["config.jetstream.enabled", values.config?.jetstream?.enabled === true],
    [
      "config.jetstream.fileStore.pvc.size",
      typeof values.config?.jetstream?.fileStore?.pvc?.size === "string",
    ],
    ["config.monitor.port 8222", values.config?.monitor?.port === 8222],
  ];
  for (const [what, good] of need) if (!good) problems.push(`helm-values.yaml: ${what} is missing`);
  const expected = authConfUsers();
  const helm = {};
  for (const u of values.config?.merge?.authorization?.users ?? [])
    helm[u.user] = {
      publish: [...(u.permissions?.publish?.allow ?? [])].sort(),
      subscribe: [...(u.permissions?.subscribe?.allow ?? [])].sort(),
      responses: u.permissions?.allow_responses === true,
    };
  for (const name of new Set([...Object.keys(expected), ...Object.keys(helm)])) {
    const a = JSON.stringify(expected[name]);
    const b = JSON.stringify(helm[name]);
    if (a !== b)
      problems.push(
        `helm-values.yaml: user ${name} differs from deploy/nats/auth.conf (auth.conf ${a}, helm ${b})`,
      );
  }
  ok.push(`helm-values.yaml: chart keys present, ${Object.keys(helm).length} users identical to auth.conf`);
} catch (err) {
  problems.push(`helm-values.yaml: ${err.message}`);
}

// The heap flags the image gives every service are the ones the soak and the e2e bench measure with.
{
  const image = /NODE_OPTIONS="([^"]+)"/.exec(readFileSync(join(root, "Dockerfile"), "utf8"))?.[1];
  const bench = /SERVICE_NODE_OPTIONS = "([^"]+)"/.exec(
    readFileSync(join(root, "bench", "lib", "procs.ts"), "utf8"),
  )?.[1];
  if (image === undefined || image !== bench)
    problems.push(`Dockerfile NODE_OPTIONS (${image}) differs from bench/lib/procs.ts (${bench})`);
  else ok.push(`Dockerfile: NODE_OPTIONS ${image}, as the benchmarks run the services`);
}

// The malloc too: the image preloads jemalloc, and the benchmarks run the services with it when it is
// installed (the soak's RSS figures depend on it).
{
  const docker = readFileSync(join(root, "Dockerfile"), "utf8");
  const procs = readFileSync(join(root, "bench", "lib", "procs.ts"), "utf8");
  if (!/libjemalloc2/.test(docker) || !/LD_PRELOAD=\/usr\/local\/lib\/libjemalloc\.so\.2/.test(docker))
    problems.push(
      "Dockerfile: expected libjemalloc2 installed and LD_PRELOAD=/usr/local/lib/libjemalloc.so.2",
    );
  else if (!/LD_PRELOAD: JEMALLOC/.test(procs))
    problems.push("bench/lib/procs.ts: the services are not run with jemalloc as the image runs them");
  else ok.push("Dockerfile: jemalloc preloaded, as the benchmarks run the services");
}

for (const line of ok) console.log(`ok  ${line}`);
for (const line of skipped) console.log(`skip ${line}`);
if (problems.length > 0) {
  for (const p of problems) console.error(`bad ${p}`);
  console.error(`\n${problems.length} problem(s) in the deployment files`);
  process.exit(1);
}
