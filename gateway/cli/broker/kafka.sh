#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft) built from the official jars on Maven Central, so tests, CI
# and local development run a real broker without Docker or a tarball download.
#
#   kafka.sh jars                          fetch the jars once into the cache; print their folder
#   kafka.sh start [--port N] [--controller-port N] [--dir D] [--background] [--set K=V]...
#                                          format D (once) and run the broker; prints bootstrap
#                                          (--set overrides one server.properties key)
#   kafka.sh stop [--port N] [--dir D]     stop a broker started with --background
#
# Environment: EVENT_GATEWAY_CACHE (default ~/.cache/event-gateway), KAFKA_JARS (use this jar
# folder instead of the cache), JAVA (default: java on PATH), KAFKA_HEAP (default 512m).
# This folder is package data of event-gateway (gateway/cli/broker/): `event-gateway dev` runs
# this script from the installed package; deploy/kafka/kafka.sh forwards here for CI, and
# tests/harness/kafka.py uses the same server.properties.in and log4j2.properties.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=4.1.1 # keep in step with pom.xml
CACHE=${EVENT_GATEWAY_CACHE:-$HOME/.cache/event-gateway}
JARS=${KAFKA_JARS:-$CACHE/kafka-$KAFKA_VERSION}
JAVA=${JAVA:-java}
MARKER=.complete # written last, so a fetch that died half-way is redone

die() { echo "kafka.sh: $*" >&2; exit 1; }

cmd_jars() {
  if [[ -f $JARS/$MARKER ]]; then echo "$JARS"; return; fi
  command -v mvn >/dev/null || die "mvn not found (Debian: apt-get install maven)"
  local tmp="$JARS.partial.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  # Output to stderr: stdout carries only the folder, for callers that capture it.
  mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime >&2
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || die "fetch incomplete: $tmp"
  touch "$tmp/$MARKER"
  rm -rf "$JARS"
  # Rename, not copy: a concurrent reader sees either no folder or a complete one.
  mv "$tmp" "$JARS" 2>/dev/null || [[ -f $JARS/$MARKER ]] || die "cannot move $tmp to $JARS"
  rm -rf "$tmp"
  trap - EXIT
  echo "$JARS"
}

PORT=9092 CPORT="" DIR="" BACKGROUND=0 SETS=()
parse() {
  while (($#)); do
    case $1 in
      --port) PORT=$2; shift 2 ;;
      --controller-port) CPORT=$2; shift 2 ;;
      --dir) DIR=$2; shift 2 ;;
      --background) BACKGROUND=1; shift ;;
      --set)
        [[ ${2:-} =~ ^[A-Za-z0-9._-]+= ]] || die "--set needs KEY=VALUE, got: ${2:-}"
        SETS+=("$2"); shift 2 ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  CPORT=${CPORT:-$((PORT + 1))}
  DIR=${DIR:-${TMPDIR:-/tmp}/event-gateway-kafka-$PORT}
}

# Port of Kafka's Uuid.randomUuid().toString(): 16 random bytes, URL-safe base64, no padding,
# never starting with '-' (Kafka's own tools avoid that because it reads as an option).
cluster_id() {
  local id
  while :; do
    id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ $id != -* ]] && { echo "$id"; return; }
  done
}

cmd_start() {
  parse "$@"
  local jars
  jars=$(cmd_jars)
  mkdir -p "$DIR"
  sed -e "s|\${port}|$PORT|g" -e "s|\${controller_port}|$CPORT|g" -e "s|\${log_dir}|$DIR/data|g" \
    "$HERE/server.properties.in" >"$DIR/server.properties"
  local kv
  for kv in ${SETS[@]+"${SETS[@]}"}; do # the template's line for the key goes, the new one stays
    awk -v key="${kv%%=*}=" 'index($0, key) != 1' "$DIR/server.properties" >"$DIR/server.properties.new"
    echo "$kv" >>"$DIR/server.properties.new"
    mv "$DIR/server.properties.new" "$DIR/server.properties"
  done
  local java=("$JAVA" "-Dlog4j2.configurationFile=$HERE/log4j2.properties" -cp "$jars/*")
  if [[ ! -f $DIR/data/meta.properties ]]; then # keep the data of an earlier run
    "${java[@]}" kafka.tools.StorageTool format -t "$(cluster_id)" \
      -c "$DIR/server.properties" >/dev/null
  fi
  local run=("${java[@]}" "-Xms256m" "-Xmx${KAFKA_HEAP:-512m}" -XX:+UseSerialGC
    kafka.Kafka "$DIR/server.properties")
  if ((BACKGROUND == 0)); then
    echo "127.0.0.1:$PORT (data in $DIR, Ctrl-C stops)" >&2
    exec "${run[@]}"
  fi
  nohup "${run[@]}" >"$DIR/kafka.log" 2>&1 &
  echo $! >"$DIR/kafka.pid"
  local i
  for ((i = 0; i < 90; i++)); do
    kill -0 "$(cat "$DIR/kafka.pid")" 2>/dev/null || { tail -n 30 "$DIR/kafka.log" >&2; die "broker exited"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then echo "127.0.0.1:$PORT"; return; fi
    sleep 1
  done
  die "broker did not listen on 127.0.0.1:$PORT within 90 s; log: $DIR/kafka.log"
}

cmd_stop() {
  parse "$@"
  local pidfile=$DIR/kafka.pid pid i
  [[ -f $pidfile ]] || die "no $pidfile (was it started with --background?)"
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case ${1:-} in
  jars) shift; cmd_jars "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) sed -n '5,12p' "$0" >&2; exit 2 ;;
esac
