#!/usr/bin/env bash
# Three fleetca replicas on one throwaway PostgreSQL, on loopback (docs/ha.md). Needs Debian's
# postgresql package (initdb, pg_ctl) and a built fleetca (npm run build). Ctrl-C stops
# everything and removes the temporary directory.
#
#   npm run build && scripts/ha-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x dist/cli/fleetca.js ] || { echo "build first: npm run build" >&2; exit 1; }

bin=$(command -v initdb >/dev/null 2>&1 && dirname "$(readlink -f "$(command -v initdb)")" || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "${bin:-}" ] && [ -x "$bin/initdb" ] || { echo "PostgreSQL not found: apt-get install -y postgresql" >&2; exit 1; }

dir=$(mktemp -d -t fleetca-ha-XXXXXX)
chmod 755 "$dir"
# PostgreSQL refuses to run as root: as root, the cluster runs as the postgres user.
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); chown postgres: "$dir"; fi
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

port=$(free_port)
"${as_pg[@]}" "$bin/initdb" -D "$dir/pg" -A trust -U fleetca -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
"${as_pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U fleetca fleetca
url="postgres://fleetca@127.0.0.1:$port/fleetca"

# One passphrase for all replicas (the KEK is derived from it; it is never in the database).
umask 077
head -c 24 /dev/urandom | base64 > "$dir/passphrase"
umask 022

# The load balancer's URLs would go in publicUrl/apiUrl; here replica 1's listeners stand in.
pub1=$(free_port)
api1=$(free_port)
for i in 1 2 3; do
  if [ "$i" = 1 ]; then api=$api1; pub=$pub1; else api=$(free_port); pub=$(free_port); fi
  mkdir -p "$dir/r$i"
  cat > "$dir/r$i/config.yaml" <<EOF
dataDir: ./ca-data
listen: { api: "127.0.0.1:$api", public: "127.0.0.1:$pub" }
publicUrl: http://127.0.0.1:$pub1
apiUrl: https://127.0.0.1:$api1
passphraseFile: $dir/passphrase
storage: { type: postgres, url: "$url" }
EOF
  node dist/cli/fleetca.js serve --config "$dir/r$i/config.yaml" > "$dir/r$i/log" 2>&1 &
  pids+=($!)
  # The first replica makes the CA on the empty database; the others then serve it.
  if [ "$i" = 1 ]; then
    for _ in $(seq 1 100); do grep -q 'msg="fleetca ready"' "$dir/r1/log" && break; sleep 0.2; done
  fi
  eval "api_$i=$api pub_$i=$pub"
done
for i in 1 2 3; do
  for _ in $(seq 1 100); do grep -q 'msg="fleetca ready"' "$dir/r$i/log" && break; sleep 0.2; done
  grep -q 'msg="fleetca ready"' "$dir/r$i/log" || { echo "replica $i did not start:" >&2; cat "$dir/r$i/log" >&2; exit 1; }
done

echo "PostgreSQL: $url (data in $dir/pg)"
for i in 1 2 3; do
  eval "echo \"replica $i: API https://127.0.0.1:\$api_$i  public http://127.0.0.1:\$pub_$i  log $dir/r$i/log\""
done
echo
echo "Try: a token from any replica's config, a certificate from another replica:"
echo "  FLEETCA_CONFIG=$dir/r2/config.yaml node dist/cli/fleetca.js token create --sub demo --san demo.internal"
echo "  curl http://127.0.0.1:$pub_3/healthz"
echo "Ctrl-C stops the replicas and PostgreSQL and removes $dir."
wait
