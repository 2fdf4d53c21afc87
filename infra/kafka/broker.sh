#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, combined broker + controller) on loopback, for development and tests.
#   infra/kafka/broker.sh start | stop | status | fetch
# Jars come from Maven Central (pom.xml beside this file) and are cached outside the clone.
# Environment (defaults):
#   FMS_HOME             ~/.cache/feature-memory     cache root: jars, and the broker's data unless KAFKA_DIR is set
#   KAFKA_DIR            $FMS_HOME/kafka              this broker's data/, logs/, server.properties and pid file
#   KAFKA_PORT           9092                         client port on 127.0.0.1; the controller uses KAFKA_PORT+1
#   KAFKA_HEAP_OPTS      -Xms256m -Xmx512m
#   KAFKA_START_TIMEOUT  90                           seconds to wait until the broker accepts clients
#   KAFKA_SASL_PORT      (unset)                      also a SASL_PLAINTEXT listener (mechanism PLAIN) on this port,
#   KAFKA_SASL_USERS     (unset)                      for these users: user:password[,user:password...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FMS_HOME="${FMS_HOME:-$HOME/.cache/feature-memory}"
KAFKA_DIR="${KAFKA_DIR:-$FMS_HOME/kafka}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="$((KAFKA_PORT + 1))"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
libs="$FMS_HOME/kafka-libs/$kafka_version"
pidfile="$KAFKA_DIR/broker.pid"
log="$KAFKA_DIR/logs/server.log"

fetch() {
  [ -f "$libs/.complete" ] && return 0
  echo "fetching Apache Kafka $kafka_version from Maven Central into $libs" >&2
  mkdir -p "$libs"
  mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs" >&2
  touch "$libs/.complete"
}

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

accepts_clients() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; }

write_config() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://127.0.0.1:$KAFKA_PORT" protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" sasl=""
  if [ -n "${KAFKA_SASL_PORT:-}" ]; then
    # Clients that must authenticate (tests of secured clients); brokers and controller stay on PLAINTEXT.
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT"
    advertised="$advertised,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT"
    protocols="$protocols,SASL_PLAINTEXT:SASL_PLAINTEXT"
    local users="" pair
    for pair in ${KAFKA_SASL_USERS//,/ }; do users="$users user_${pair%%:*}=\"${pair#*:}\""; done
    sasl="sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$users;"
  fi
  cat > "$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
$sasl
log.dirs=$KAFKA_DIR/data
# One node: every internal topic has a single replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
# Local use: a consumer group starts at once instead of waiting for more members.
group.initial.rebalance.delay.ms=0
# Sized for a 2-core machine.
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.backoff.ms=5000
num.partitions=4
auto.create.topics.enable=true
delete.topic.enable=true
PROPS
  cat > "$KAFKA_DIR/log4j2.yaml" <<LOG
Configuration:
  Appenders:
    File:
      name: file
      fileName: "$log"
      PatternLayout: { pattern: "[%d] %p %m (%c)%n" }
  Loggers:
    Root: { level: INFO, AppenderRef: [ { ref: file } ] }
    Logger:
      - { name: kafka.request.logger, level: WARN }
      - { name: org.apache.kafka.controller, level: WARN }
      - { name: state.change.logger, level: WARN }
LOG
}

# shellcheck disable=SC2206
java_argv() {
  JAVA=(java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" -cp "$libs/*")
}

start() {
  if pid="$(running_pid)"; then echo "kafka already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  fetch
  write_config
  java_argv
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    "${JAVA[@]}" kafka.tools.StorageTool format --ignore-formatted \
      -t "$("${JAVA[@]}" kafka.tools.StorageTool random-uuid)" -c "$KAFKA_DIR/server.properties" >/dev/null
  fi
  : > "$log"
  nohup "${JAVA[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" > "$KAFKA_DIR/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  local waited=0
  until accepts_clients && grep -q "Kafka Server started" "$log" 2>/dev/null; do
    if ! running_pid >/dev/null; then
      echo "kafka exited during start; see $log and $KAFKA_DIR/logs/stdout.log" >&2
      tail -20 "$KAFKA_DIR/logs/stdout.log" >&2 || true
      exit 1
    fi
    if [ "$waited" -ge "$((KAFKA_START_TIMEOUT * 4))" ]; then
      echo "kafka did not accept clients within ${KAFKA_START_TIMEOUT}s; see $log" >&2; stop; exit 1
    fi
    sleep 0.25; waited=$((waited + 1))
  done
  echo "kafka $kafka_version running (pid $(cat "$pidfile")) on 127.0.0.1:$KAFKA_PORT; data $KAFKA_DIR/data, log $log"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then echo "kafka not running"; rm -f "$pidfile"; return 0; fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then echo "kafka did not stop in 30s; killing" >&2; kill -9 "$pid" || true; fi
  rm -f "$pidfile"
  echo "kafka stopped"
}

status() {
  local pid
  if pid="$(running_pid)" && accepts_clients; then
    echo "kafka $kafka_version running (pid $pid) on 127.0.0.1:$KAFKA_PORT; data $KAFKA_DIR/data, log $log"
  elif [ -n "${pid:-}" ]; then
    echo "kafka starting or unhealthy (pid $pid), not accepting clients on 127.0.0.1:$KAFKA_PORT"; return 1
  else
    echo "kafka not running (data $KAFKA_DIR)"; return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fetch) fetch; echo "$libs" ;;
  *) echo "usage: $0 start|stop|status|fetch" >&2; exit 2 ;;
esac
