"""A matcher process under seeded load, for the kill -9 test: `python -m ... DIR SEED`.

Prints `recovered SEQ` once it has recovered, then `ack SEQ` after each batch is durable and
applied (what a client would have been told), until it is killed.
"""

from __future__ import annotations

import random
import sys

from matching.tests.worker.load import SYMBOLS, LoadGenerator
from matching.worker.matcher import Matcher


def main(directory: str, seed: int) -> None:
    # Small segments: kills land before, during and after rotations too.
    matcher = Matcher.open(SYMBOLS, directory, snapshot_every=300, segment_bytes=20_000)
    print(f"recovered {matcher.seq}", flush=True)
    load, rng = LoadGenerator(seed), random.Random(seed)
    while True:
        replies = matcher.process(load.batch(matcher.engine, rng.randint(1, 40)))
        print(f"ack {replies[-1].seq}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
