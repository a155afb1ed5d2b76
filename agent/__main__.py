"""``python -m agent dev|start`` runs the call agent; ``python -m agent token`` mints a caller token;
``python -m agent watch`` re-dispatches the calls of an agent worker that died (agent/failover.py)."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "token":
    from .token import main as token_main

    token_main(sys.argv[2:])
elif len(sys.argv) > 1 and sys.argv[1] == "watch":
    from .failover import main as watch_main

    watch_main()
else:
    from .worker import main

    main()
