# flashhold: `make run` serves the API with a demo catalog; `make test` runs every test.
# Both start Redis and PostgreSQL first when they are not running (deploy/local/up.sh).
GO ?= go
BIN := bin/flashhold

.PHONY: all services build test test-quick rules-test image image-test docs-config bench bench-import bench-engine bench-ledger soak run stop clean

all: build

services:
	deploy/local/up.sh

build:
	$(GO) build -o $(BIN) ./cmd/flashhold

# Four packages at a time on two cores: the fault and service tests spend much of their time
# waiting on processes they started, which leaves CPU to the others.
test: services rules-test
	deploy/local/browser.sh
	deploy/local/sentinel.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 -p 4 -timeout 30m ./...

# The Prometheus alerting rules: promtool check and the rules' unit tests
# (deploy/observability/prometheus/rules_test.yml); installs promtool when it is missing.
rules-test:
	deploy/observability/promtool.sh

# The same tests without the race detector (faster while iterating).
test-quick: services
	$(GO) test -count=1 -p 4 -timeout 30m ./...

# The container image (deploy/container/Containerfile) with podman or docker; podman is
# installed from Debian's packages when neither is. IMAGE names it (localhost/flashhold:latest).
image:
	deploy/container/build.sh

# Runs the image's binary from its exported root filesystem with chroot (as root): version,
# serve, /healthz, a hold against the local Redis and PostgreSQL. Builds the image first when it
# is missing or from another revision.
image-test: services
	deploy/container/image-test.sh

# docs/configuration.md, written from the list of variables in config/variables.txt (a test in
# config/ fails when the file is stale).
docs-config:
	$(GO) run ./config/cmd/gendoc

# The standard bench suite: every scenario and baseline, report and plots in bench-report/.
bench: services build
	$(BIN) bench --out bench-report

# One asynchronous import of 1,000,000 rows over 100,000 pools, with checkout beside it
# (docs/bench/history.md, "A million-row import"); IMPORT_FLAGS=--import-no-yield for full speed.
bench-import: services build
	$(BIN) bench --scenario import --duration 20s --baseline-duration 2s --out bench-report-import $(IMPORT_FLAGS)

bench-engine: services
	$(GO) test ./engine -run '^$$' -bench 'BenchmarkReserve|BenchmarkCommit' -benchtime 5s

# The ledger's append rate and query latency at 0, 5M and 20M rows, statistics stale and
# fresh: docs/bench/ledger-growth.md.
LEDGER_ROWS ?= 5000000,20000000
bench-ledger: services
	FLASHHOLD_LEDGER_GROWTH=$(LEDGER_ROWS) FLASHHOLD_LEDGER_GROWTH_OUT=$(CURDIR)/docs/bench $(GO) test ./ledger -run '^TestLedgerGrowth$$' -count=1 -v -timeout 2h

# Mixed traffic for SOAK (10m) with every background service on; fails when the service's
# footprint grows after the warm-up or a client was told something untrue. Writes docs/soak/.
SOAK ?= 10m
soak: services
	FLASHHOLD_SOAK=$(SOAK) FLASHHOLD_SOAK_OUT=$(CURDIR)/docs/soak $(GO) test ./internal/clientcheck -run '^TestSoak$$' -count=1 -v -timeout 2h

# The demo runs on a Redis of its own (port 6390, append-only file), which run.sh starts.
run: build
	deploy/demo/run.sh

# Stops only servers that deploy/local/up.sh started under .local/.
stop:
	deploy/local/down.sh

clean:
	rm -rf bin
