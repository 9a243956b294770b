"""`python -m lmcollapse` is the `lmcollapse` command."""

from lmcollapse.cli import main

if __name__ == "__main__":
    main(prog_name="lmcollapse")
