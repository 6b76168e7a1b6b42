import sys

from bench.cli import main

if __name__ == "__main__":  # not when a spawned child process (profile's memory cap) imports it
    sys.exit(main())
