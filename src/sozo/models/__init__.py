"""The model families: one module or package per family, each registered by name (see
:mod:`sozo.registry`). ``sozo.list_models()`` lists them."""
