# caddy-webhooks: see README.md.
GO       ?= go
XCADDY   := bin/xcaddy
CADDY    := bin/caddy
FUZZTIME ?= 60s

.PHONY: build run test bench fuzz adapt-examples readme-examples docs clean

# Caddy with this plugin, as xcaddy.json describes the build.
build: $(XCADDY)
	$(GO) run ./internal/buildcaddy -config xcaddy.json -xcaddy $(XCADDY) -o $(CADDY)
	$(CADDY) list-modules | grep -q '^http.handlers.codemie_webhooks$$'

$(XCADDY):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5

# Serves examples/Caddyfile on the embedded default store (no Redis).
run: build
	$(CADDY) run --config examples/Caddyfile --adapter caddyfile

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	# allocation budgets, without the race detector (it allocates on its own)
	$(GO) test -count=1 -run 'Allocs' ./...

# Micro-benchmarks, then a load run against plain Caddy: prints a table and
# writes bench/results.json. Starts its own redis-server and stub upstream.
bench:
	$(GO) run ./bench

# Each fuzz target for FUZZTIME; `make test` runs their seed corpora.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzzing $$target in $$pkg for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# Every example must adapt with the built binary.
adapt-examples: build
	@for f in examples/*Caddyfile*; do \
		echo "adapting $$f"; \
		$(CADDY) adapt --config $$f --adapter caddyfile >/dev/null || exit 1; \
	done

# Every `$ ` command of the README's quick start and examples, run against
# `make run`, must print what the README shows under it.
readme-examples: build
	.ci/readme-examples

# Rewrites docs/configuration.md's "Fields and defaults" from the field
# docs, the one place that states each option's default (make test fails
# while it is out of date).
docs:
	go test ./module -run '^TestFieldsDoc$$' -update-docs

clean:
	rm -rf bin
