#!/bin/sh
# redis-server, redis-cli and redis-benchmark: the RESP tests and benchmarks run them beside
# crdtkv.  Installed with apt-get when missing (as root); without them those tests are skipped.
if command -v redis-server >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        redis-server redis-tools >/dev/null; then
        exit 0
    fi
    echo "note: apt-get could not install redis-server and redis-tools" >&2
else
    echo "note: apt-get install redis-server redis-tools to run the tests that compare with Redis" >&2
fi
exit 0
