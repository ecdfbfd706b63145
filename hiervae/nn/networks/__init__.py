"""Network modules and the network kinds a spec may name (``mlp``, ``resnet``); importing
this package registers every kind (one module each)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
