#!/usr/bin/env bash
# The single-node Apache Kafka script (`kafka.sh jars | start | stop`, see its header) and the
# files it uses (pom.xml, server.properties.in, log4j2.properties) live in gateway/cli/broker/:
# they ship in the event-gateway wheel as package data, so `event-gateway dev` finds them in an
# installed package too. This path stays for CI, the test harness and muscle memory.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../../gateway/cli/broker/kafka.sh" "$@"
