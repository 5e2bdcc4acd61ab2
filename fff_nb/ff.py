"""`fff_nb.ff`: the old name of `fff_nb.forward_forward` (Forward-Forward training), kept so that old imports work.

Hand-written, not exported by nbdev. Importing it puts the module `fff_nb.forward_forward` itself in its place, so
`import fff_nb.ff` and `from fff_nb.ff import FFNet, FFC, ...` keep working and `fff_nb.ff.X is
fff_nb.forward_forward.X` for every name, private ones included. New code should import `fff_nb.forward_forward`.
"""
import sys
from . import forward_forward as _m

sys.modules[__name__] = _m
