#!/usr/bin/env bash
# Checks the Helm chart helm/dvsigner: `helm lint`, `helm template` with each values example,
# schema validation of the manifests (kubernetes-validate), pod hardening (non-root, read-only
# root filesystem, resource requests, probes), and `dvsigner signer|combiner --config <rendered
# ConfigMap> --check-config` on every dvsigner config the chart renders. Finally a deliberately
# broken config must be refused, so the check is known to bite.
#
# Usage: tests/helm/check.sh HELM KUBERNETES_VALIDATE DVSIGNER
# (.ci/run installs helm and kubernetes-validate and passes target/debug/dvsigner.)
# Exits non-zero on the first failure.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 HELM KUBERNETES_VALIDATE DVSIGNER" >&2
  exit 2
fi
helm=$1 kv=$2 dvsigner=$3
for tool in "$helm" "$kv" "$dvsigner"; do
  [ -x "$tool" ] || { echo "FAIL: $tool is not an executable (see .ci/run for the installs)" >&2; exit 1; }
done
cd "$(dirname "$0")/../.."
chart=helm/dvsigner
# kubernetes-validate's venv has PyYAML, which the extraction below needs.
py="$(dirname "$kv")/python"
k8s_version=1.30.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked=0 failed=0

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

echo "helm: $checked passed, $failed failed"
[ "$failed" -eq 0 ]
