#!/bin/sh
# kafka.sh up|down|restart|status: a single-node Apache Kafka broker (KRaft, one
# combined broker and controller) on 127.0.0.1:9092 for eddy's Kafka specs
# and make bench-kafka.  The jars come from Maven Central (tools/kafka/
# pom.xml) into .cache/kafka/libs, once; each `up` starts from an empty log,
# `restart` keeps it.  EDDY_KAFKA_PORT moves the broker (the controller
# listens on the port after it), so that two checkouts can test at once;
# EDDY_KAFKA_LIBS points at jars fetched elsewhere.
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tools/kafka"
CACHE=${EDDY_KAFKA_CACHE:-$ROOT/.cache/kafka}
LIBS=${EDDY_KAFKA_LIBS:-$CACHE/libs}
RUN="$CACHE/run"
PIDFILE="$RUN/broker.pid"
LOG="$RUN/broker.log"
PORT=${EDDY_KAFKA_PORT:-9092}
BOOTSTRAP=127.0.0.1:$PORT

fetch() {
  stamp=$(cksum < "$HERE/pom.xml" | cut -d' ' -f1)
  if [ -f "$LIBS/.stamp" ] && [ "$(cat "$LIBS/.stamp")" = "$stamp" ]; then return 0; fi
  echo "kafka: fetching the broker's jars from Maven Central into $LIBS"
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime \
    || { echo "kafka: cannot fetch the broker's jars (is Maven Central reachable?)" >&2; exit 1; }
  echo "$stamp" > "$LIBS/.stamp"
}

# Runs a class from the broker's jars.
jrun() {
  java -Xmx512m -cp "$LIBS/*" -Dlog4j2.configurationFile="$HERE/log4j2.properties" "$@"
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

ready() {
  kcat -b "$BOOTSTRAP" -L -m 2 >/dev/null 2>&1
}

# Starts the broker on the log in $RUN and waits until it answers.
start() {
  # setsid: the broker outlives the make that started it, not its signals.
  setsid java -Xmx512m -cp "$LIBS/*" -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -Dkafka.logs.dir="$RUN" kafka.Kafka "$RUN/server.properties" \
    > "$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  i=0
  while ! ready; do
    if ! running; then
      echo "kafka: the broker exited while starting; its log:" >&2
      tail -20 "$LOG" >&2
      exit 1
    fi
    i=$((i + 1))
    if [ $i -gt 600 ]; then
      echo "kafka: the broker did not answer on $BOOTSTRAP within 60 s; its log:" >&2
      tail -20 "$LOG" >&2
      down
      exit 1
    fi
    sleep 0.1
  done
  echo "kafka: up on $BOOTSTRAP (pid $(cat "$PIDFILE"))"
}

up() {
  if running && ready; then echo "kafka: already up on $BOOTSTRAP"; return 0; fi
  if running; then down; fi
  fetch
  rm -rf "$RUN"
  mkdir -p "$RUN/data"
  sed -e "s/:9092/:$PORT/g" -e "s/:9093/:$((PORT + 1))/g" \
    "$HERE/server.properties" > "$RUN/server.properties"
  echo "log.dirs=$RUN/data" >> "$RUN/server.properties"
  id=$(jrun kafka.tools.StorageTool random-uuid)
  jrun kafka.tools.StorageTool format -t "$id" -c "$RUN/server.properties" > "$RUN/format.log" 2>&1 \
    || { echo "kafka: formatting the log failed:" >&2; cat "$RUN/format.log" >&2; exit 1; }
  start
}

down() {
  if ! running; then rm -f "$PIDFILE"; return 0; fi
  pid=$(cat "$PIDFILE")
  kill -TERM "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.1
  done
  rm -f "$PIDFILE"
  echo "kafka: down"
}

# Stops the broker and starts it again on the same log: topics, messages
# and group offsets stay (the Kafka specs' broker restart).
restart() {
  [ -f "$RUN/server.properties" ] || { echo "kafka: no broker to restart (run up first)" >&2; exit 1; }
  down
  start
}

case "$1" in
  up) up ;;
  restart) restart ;;
  down) down ;;
  status) if running && ready; then echo "kafka: up on $BOOTSTRAP"; else echo "kafka: down"; exit 1; fi ;;
  *) echo "usage: $0 up|down|restart|status" >&2; exit 2 ;;
esac
