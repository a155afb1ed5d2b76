"""``python -m avatar start|dev``: run the avatar worker (LiveKit Agents CLI)."""

from .worker import main

main()
