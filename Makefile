# The README's commands. Each installs what is missing first (scripts/setup.sh).
.PHONY: demo test fuzz soak kill-loop bench corpus setup static install clean

# The main job: the daemon on its embedded defaults, a synthetic sensor feed with injected anomalies,
# and `eddy watch` (scripts/demo.sh; DEMO_SECONDS=0 runs until Ctrl-C).
demo:
	scripts/setup.sh release
	scripts/demo.sh

# Swift tests (unit and end-to-end over real sockets), then the Python client against a real daemon.
test:
	scripts/setup.sh debug python
	swift test
	.venv/bin/python -m pytest -q protocols/python/tests

# libFuzzer on ingest's ZMTP, admission, the configuration file and checkpoint restore (scripts/fuzz.sh): FUZZ_RUNS
# inputs each from seed 1 (CI runs it after the tests and reports what it finds); `scripts/fuzz.sh
# SECONDS` explores with a random seed instead.
FUZZ_RUNS ?= 1000000
fuzz:
	scripts/setup.sh
	FUZZ_RUNS=$(FUZZ_RUNS) scripts/fuzz.sh

# Robustness runs with figures (minutes): 50 kill -9 at random moments, and a soak with RSS and
# descriptors sampled (SOAK_SECONDS, 600).
SOAK_SECONDS ?= 600
kill-loop:
	scripts/setup.sh release python
	.venv/bin/python scripts/kill-loop.py --kills 50
soak:
	scripts/setup.sh release python
	.venv/bin/python scripts/soak.py --seconds $(SOAK_SECONDS)

# Eddy against the numpy peer (and PyTorch, if installed), alternating in one invocation.
bench:
	scripts/setup.sh release python
	.venv/bin/python scripts/bench-compare.py

# Labelled synthetic corpora for `eddy eval` (GutenTAG; scripts/make-corpus.py): out/corpus/<kind>-<seed>
# for the development seeds 10, 11, 12. Seeds kept for verification are not generated here. A corpus
# is complete once its MANIFEST.json is written (last): an interrupted one is removed and made again.
corpus:
	scripts/setup.sh release corpus
	set -e; for k in univariate multivariate; do for s in 10 11 12; do \
		d=out/corpus/$$k-$$s; \
		if [ ! -f $$d/MANIFEST.json ]; then rm -rf $$d; .venv-corpus/bin/python scripts/make-corpus.py --out $$d --seed $$s --kind $$k; fi; \
	done; done

setup:
	scripts/setup.sh debug python

# The daemon for a host without a Swift toolchain: the Swift runtime and Foundation linked in
# (--static-swift-stdlib, its own build directory), so it needs only libzmq5, libsodium23 and
# libopenblas0 (checked: no libswift* among its libraries). `make static` builds it as you;
# `sudo make install` only copies it (PREFIX=/usr/local, DESTDIR for packaging).
PREFIX ?= /usr/local
STATIC = .build/static/release/eddy
static:
	scripts/setup.sh
	swift build -c release --static-swift-stdlib --scratch-path .build/static --product eddy
	! ldd $(STATIC) | grep -E 'libswift|libFoundation|libdispatch'
install:
	@[ -x $(STATIC) ] || { echo "install: no $(STATIC); run 'make static' first (as yourself, not root)" >&2; exit 1; }
	@newer=$$(find Sources Package.swift -newer $(STATIC) -type f -print -quit); [ -z "$$newer" ] || { \
		echo "install: $(STATIC) is older than $$newer; run 'make static' first (as yourself, not root)" >&2; exit 1; }
	install -D -m 755 $(STATIC) $(DESTDIR)$(PREFIX)/bin/eddy

clean:
	rm -rf .build .venv .venv-corpus out
