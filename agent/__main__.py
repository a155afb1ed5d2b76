"""``python -m agent dev|start`` runs the call agent; ``python -m agent token`` mints a caller token."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "token":
    from .token import main as token_main

    token_main(sys.argv[2:])
else:
    from .worker import main

    main()
