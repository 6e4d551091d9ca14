"""`python -m lsllm`, as launchers such as `torchrun -m lsllm train ...` start it."""

import sys

from lsllm.cli import main

sys.exit(main())
