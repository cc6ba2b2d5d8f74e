#!/usr/bin/env bash
# Checks the Helm chart helm/dvsigner: `helm lint`, `helm template` with each values example,
# schema validation of the manifests (kubernetes-validate), pod hardening (non-root, read-only
# root filesystem, resource requests, probes), and `dvsigner signer|combiner --config <rendered
# ConfigMap> --check-config` on every dvsigner config the chart renders. Finally a deliberately
# broken config must be refused, so the check is known to bite. The monitoring files
# (helm/dvsigner/dashboards/): `promtool check rules` on the alert rules, on every dashboard
# query and on each rendered PrometheusRule (which must carry the rules file unchanged),
# `promtool test rules` with tests/helm/alerts.test.yaml, and the rendered dashboards ConfigMap
# must hold every dashboard, unchanged, under the Grafana sidecar label.
#
# Usage: tests/helm/check.sh HELM KUBERNETES_VALIDATE DVSIGNER PROMTOOL
# (.ci/run installs helm, kubernetes-validate and Prometheus's promtool and passes
# target/debug/dvsigner.)
# Exits non-zero on the first failure.
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 HELM KUBERNETES_VALIDATE DVSIGNER PROMTOOL" >&2
  exit 2
fi
helm=$1 kv=$2 dvsigner=$3 promtool=$4
for tool in "$helm" "$kv" "$dvsigner" "$promtool"; do
  [ -x "$tool" ] || { echo "FAIL: $tool is not an executable (see .ci/run for the installs)" >&2; exit 1; }
done
# Absolute paths: some steps below run in another directory.
helm=$(readlink -f "$helm") kv=$(readlink -f "$kv") dvsigner=$(readlink -f "$dvsigner")
promtool=$(readlink -f "$promtool")
cd "$(dirname "$0")/../.."
chart=helm/dvsigner
# kubernetes-validate's venv has PyYAML, which the extraction below needs.
py="$(dirname "$kv")/python"
k8s_version=1.30.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked=0 failed=0 monitoring=0

echo "-- alert rules: promtool check rules, promtool test rules"
"$promtool" check rules "$chart/dashboards/alerts.rules.yaml"
(cd tests/helm && "$promtool" test rules alerts.test.yaml)

echo "-- dashboards: every query through promtool check rules"
"$py" - "$chart/dashboards" "$work/dashboard-queries.rules.yaml" <<'PY'
import glob, json, sys, yaml
rules = []
for path in sorted(glob.glob(sys.argv[1] + "/*.json")):
    d = json.load(open(path))
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))
    exprs = [t["expr"] for p in walk(d["panels"]) for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            if q.startswith("label_values("):
                q = q[len("label_values("):].rsplit(",", 1)[0]
            exprs.append(q)
    if not exprs:
        sys.exit(f"FAIL: {path} has no queries")
    for e in exprs:
        # Grafana's interval variable; $job/$instance stay inside their regex strings.
        e = e.replace("$__rate_interval", "5m")
        rules.append({"record": f"dvsigner:dashboard_query:{len(rules)}", "expr": e})
yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]},
               open(sys.argv[2], "w"))
print(f"{len(rules)} dashboard queries")
PY
"$promtool" check rules "$work/dashboard-queries.rules.yaml"

echo "-- helm lint (default values)"
"$helm" lint --strict "$chart"

for example in "$chart"/examples/*.yaml; do
  name=$(basename "$example" .yaml)
  echo "-- $name: helm lint, helm template"
  "$helm" lint --strict "$chart" -f "$example" >/dev/null
  "$helm" template "dv-$name" "$chart" --namespace validators -f "$example" >"$work/$name.yaml"

  echo "-- $name: kubernetes-validate (Kubernetes $k8s_version, strict)"
  # Custom resources (cert-manager Certificate, ServiceMonitor) have no schema here: warnings.
  "$kv" --strict --quiet -k "$k8s_version" "$work/$name.yaml"

  echo "-- $name: pod hardening and the rendered dvsigner configs"
  mkdir -p "$work/$name"
  "$py" - "$work/$name.yaml" "$work/$name" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = sys.argv[2]
problems, configs = [], 0
for d in docs:
    kind, name = d["kind"], d["metadata"]["name"]
    if kind in ("StatefulSet", "Deployment"):
        pod = d["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{kind}/{name}: pod not runAsNonRoot")
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c.get("securityContext", {})
            if not sc.get("readOnlyRootFilesystem"):
                problems.append(f"{kind}/{name}/{c['name']}: root filesystem not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{kind}/{name}/{c['name']}: privilege escalation allowed")
        for c in pod["containers"]:
            if not c.get("resources", {}).get("requests"):
                problems.append(f"{kind}/{name}/{c['name']}: no resource requests")
            if c.get("command") == ["dvsigner"]:
                if "--config" not in c.get("args", []):
                    problems.append(f"{kind}/{name}/{c['name']}: dvsigner without --config")
                if "readinessProbe" not in c and "--insecure-http" not in str(c):
                    problems.append(f"{kind}/{name}/{c['name']}: no readiness probe")
                # dvsigner refuses hosts not in --http-host-allowlist; the kubelet's default
                # Host is the pod IP.
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    get = c.get(probe, {}).get("httpGet")
                    if get and {"name": "Host", "value": "localhost"} not in get.get("httpHeaders", []):
                        problems.append(f"{kind}/{name}/{c['name']}: {probe} without Host: localhost")
    if kind == "ConfigMap" and "config.yaml" in d.get("data", {}):
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        if component not in ("signer", "combiner"):
            problems.append(f"ConfigMap/{name}: unexpected component {component}")
            continue
        with open(f"{out}/{component}--{name}.yaml", "w") as f:
            f.write(d["data"]["config.yaml"])
        if component == "signer":
            # Combiners and peers reach a node by its Service name (cluster.json's URLs).
            hosts = yaml.safe_load(d["data"]["config.yaml"]).get("http-host-allowlist", [])
            ns = d["metadata"].get("namespace", "validators")
            for h in ("localhost", "127.0.0.1", name, f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
                if h not in hosts:
                    problems.append(f"ConfigMap/{name}: http-host-allowlist lacks {h}: {hosts}")
        configs += 1
if configs == 0:
    problems.append("no dvsigner config.yaml rendered")
for p in problems:
    print("FAIL:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
  echo "-- $name: rendered dashboards ConfigMap and PrometheusRule"
  mkdir -p "$work/$name-rules"
  found=$("$py" - "$work/$name.yaml" "$chart/dashboards" "$work/$name-rules" <<'PY'
import glob, json, os, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
files = {"dvsigner-" + os.path.basename(p): json.load(open(p))
         for p in glob.glob(sys.argv[2] + "/*.json")}
plain = yaml.safe_load(open(sys.argv[2] + "/alerts.rules.yaml"))
problems, found = [], 0
for d in docs:
    kind, name = d["kind"], d["metadata"]["name"]
    if kind == "PrometheusRule":
        found += 1
        if d["spec"] != plain:
            problems.append(f"PrometheusRule/{name}: spec differs from dashboards/alerts.rules.yaml")
        yaml.safe_dump(d["spec"], open(f"{sys.argv[3]}/{name}.rules.yaml", "w"))
    if kind == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
        found += 1
        data = d.get("data", {})
        if set(data) != set(files):
            problems.append(f"ConfigMap/{name}: dashboards {sorted(data)} != {sorted(files)}")
        for key, text in data.items():
            try:
                if json.loads(text) != files.get(key):
                    problems.append(f"ConfigMap/{name}: {key} differs from the chart's file")
            except ValueError as e:
                problems.append(f"ConfigMap/{name}: {key} is not JSON: {e}")
for p in problems:
    print("FAIL:", p, file=sys.stderr)
print(found)
sys.exit(1 if problems else 0)
PY
)
  monitoring=$((monitoring + found))
  for rules in "$work/$name-rules"/*.yaml; do
    [ -e "$rules" ] || continue
    "$promtool" check rules "$rules"
  done

  for cfg in "$work/$name"/*.yaml; do
    sub=$(basename "$cfg"); sub=${sub%%--*}
    if out=$(env -u DVSIGNER_SLASHING_DB "$dvsigner" "$sub" --config "$cfg" --check-config 2>&1); then
      checked=$((checked + 1))
    else
      echo "FAIL: dvsigner $sub --config ($name: $(basename "$cfg")) --check-config:" >&2
      echo "$out" >&2
      failed=$((failed + 1))
    fi
  done
done

echo "-- a broken config must be refused"
"$helm" template broken "$chart" -f "$chart/examples/signers.yaml" \
  --set signers.config.lisen=0.0.0.0:1 >"$work/broken.yaml"
"$py" - "$work/broken.yaml" "$work/broken.cfg" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {}):
        open(sys.argv[2], "w").write(d["data"]["config.yaml"])
        break
PY
if out=$("$dvsigner" signer --config "$work/broken.cfg" --check-config 2>&1); then
  echo "FAIL: a config with the unknown key 'lisen' was accepted" >&2
  failed=$((failed + 1))
elif ! grep -q 'lisen' <<<"$out"; then
  echo "FAIL: the error does not name the key: $out" >&2
  failed=$((failed + 1))
else
  checked=$((checked + 1))
fi

if [ "$monitoring" -lt 2 ]; then
  echo "FAIL: no example renders both the dashboards ConfigMap and the PrometheusRule" >&2
  failed=$((failed + 1))
fi

echo "helm: $checked passed, $failed failed"
[ "$failed" -eq 0 ]
