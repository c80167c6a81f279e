"""`python -m prunekit` (and `torchrun -m prunekit`) entry point."""

from prunekit.cli import main

if __name__ == "__main__":
    main()
