"""CLI: prepare an avatar image for the FlashTalk engine.

    python -m avatar.engines.flashtalk.prepare --checkpoint DIR --image face.png --out AVATAR_DIR \\
        [--width 448 --height 768 --frame-num 33 --device cuda --prompt "..."]

The work is done in :mod:`avatar.engines.flashtalk.preparation` (import that, not this module:
importing a submodule called ``prepare`` would replace the package's ``prepare`` function).
"""

from avatar.engines.flashtalk.preparation import main

if __name__ == "__main__":
    main()
