# subsock — the two commands: `make run` and `make test`.
GO       ?= go
ADDR     ?= :8080
FUZZTIME ?= 20s
BIN      := bin

.PHONY: run build test deps fmt-check vet race fuzz bench cluster kafka-demo clean

## run: start one node on $(ADDR) with the in-memory broker and the demo page
run: build
	./$(BIN)/subsock -addr $(ADDR) -demo

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/subsock ./cmd/subsock
	$(GO) build -o $(BIN)/subsock-bench ./cmd/subsock-bench

## test: install what the tests need, then gofmt check, go vet and the race-enabled suite
test: deps fmt-check vet race

deps:
	bash scripts/install-deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# -p 1: the load tests (hostile clients, stalled backbone, bench, browser) measure latency and
# memory; packages run one at a time so they do not measure each other.
race:
	$(GO) test -race -count=1 -p 1 -timeout 12m ./...

## fuzz: run every fuzz target for $(FUZZTIME) each
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

## bench: the standard benchmark set (under 5 minutes); results in bench/results/
bench: build
	bash scripts/bench.sh

## kafka-demo: a test Kafka, a node consuming it, a producer and a subscriber (~15 s)
kafka-demo:
	bash scripts/kafka-demo.sh

## cluster: Redis and three nodes on :8081-:8083 until Ctrl-C
cluster: build
	bash scripts/cluster.sh

clean:
	rm -rf $(BIN)
