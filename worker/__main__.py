"""python -m worker [--burst]"""

import argparse

from worker.gpu_worker import run

parser = argparse.ArgumentParser(prog="python -m worker", description="Run one soundcheck worker.")
parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
args = parser.parse_args()
run(burst=args.burst, name=args.name)
