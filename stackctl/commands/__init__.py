"""click commands, one module per group; each is parse -> workflow call -> render.

Imported lazily by ``stackctl.cli.LazyGroup``; heavy imports stay inside the functions.
"""
