# The servers and data the test suite needs, started/fetched by ./scripts/test (and by
# ./scripts/faults, ./scripts/bench). Source, don't run.
# shellcheck shell=bash

# test_env_up RUN_DIR: installs what is missing, starts a private Postgres and exports
# TEST_DATABASE_URL, TANSU_BIN and SHORTENER_TEST_GEOIP_DB for the tests.
test_env_up() {
  local run_dir=$1
  apt_ensure libssl-dev pkg-config ca-certificates
  cmd_ensure npm npm
  python3 -m pip --version >/dev/null 2>&1 || apt_ensure python3-pip
  pg_ensure_installed
  # The dashboard's browser test (crates/e2e/tests/dashboard.rs) drives these over WebDriver.
  apt_ensure chromium chromium-driver
  local port; port=$(free_port)
  TEST_PG_DATA="$run_dir/pg/data"
  pg_start "$TEST_PG_DATA" "$port" "$run_dir/pg/postgres.log"
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  TANSU_BIN=$(tansu_ensure)
  export TANSU_BIN
  SHORTENER_TEST_GEOIP_DB=$(geoip_ensure)
  export SHORTENER_TEST_GEOIP_DB
  source "$REPO_ROOT/scripts/lib/helm.sh" && deploy_tools_ensure  # HELM_PYTHON etc. for crates/deploy-checks
  log "test Postgres on 127.0.0.1:$port, tansu at $TANSU_BIN, GeoIP db at $SHORTENER_TEST_GEOIP_DB"
}

test_env_down() {
  [ -n "${TEST_PG_DATA:-}" ] && pg_stop "$TEST_PG_DATA"
  return 0
}
