"""`python -m hubert_tf ...` is the `hubert-tf` command."""

import sys

from .cli import main

sys.exit(main())
