"""Test support: the scripted caller, the local stack, provisioning through the admin API, the A/V offset, the demo.

The tests, the benchmarks (``bench/``) and ``make demo`` import it; no deployment does (the image does
not copy it, and ``tests/test_layers.py`` keeps agent/, avatar/, admin/ and dialogue/ from importing it).
"""
