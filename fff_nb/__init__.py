# Hand-maintained (nbdev_export only rewrites __version__): the public names of fff_nb.
__version__ = "0.1.0"

from .core import FFF, declare_backend

# The backends `FFF(backend=...)` accepts besides the torch reference. Each module registers its backend when it is
# first imported (on first use); 'auto' tries them in this order on the device types given, then the torch reference.
declare_backend('cpp', 'fff_nb.ops', auto=('cpu',))
declare_backend('cuda', 'fff_nb.cuda', auto=('cuda',))
declare_backend('triton', 'fff_nb.triton', auto=('cuda',), install="pip install 'fff_nb[triton]'")
declare_backend('jax', 'fff_nb.jax', install="pip install 'fff_nb[jax]'")
from .ultrafastbert import UltraFFF, EncoderLayer, Encoder, ffns_from_crammed, encoder_from_crammed
from .variants import (VARIANTS, FlatFFF, TopKFFF, ReLUFFF, ForestFFF, HypercubeFFF, RecursiveFFF, SoftTreeFFF, GeluFFF,
                       ortho_penalty, ortho_loss)
from .leaf import LeafFFF, LocalSGD, LocalAdam, hardening_loss, leaf_from_fastfeedforward, leaf_to_fastfeedforward
# Forward-Forward training lives in its own namespace (`from fff_nb.forward_forward import FFNet, FFC, FFRNN, FFFLayer, ...`;
# `fff_nb.ff` is its old name, an alias of the same module);
# the optional backends need their extras (`[triton]`, `[jax]`).
