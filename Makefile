# The README's commands. Each installs what is missing first (scripts/setup.sh).
.PHONY: demo test bench setup clean

# The main job. Until `eddy serve` lands (issue 3), the demo trains both learners on the reference
# stream and prints their learning curves and speed.
demo:
	scripts/setup.sh release
	.build/release/eddy bench train --model ae --seconds 1
	.build/release/eddy bench train --model moco --seconds 1

test:
	scripts/setup.sh
	swift test

# Eddy against the numpy peer (and PyTorch, if installed), alternating in one invocation.
bench:
	scripts/setup.sh release python
	.venv/bin/python scripts/bench-compare.py

setup:
	scripts/setup.sh debug python

clean:
	rm -rf .build .venv out
