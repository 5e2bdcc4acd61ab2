# Hand-maintained (nbdev_export only rewrites __version__): the public names of fff_nb.
__version__ = "0.1.0"

from .core import FFF
from .ultrafastbert import UltraFFF, EncoderLayer, Encoder, ffns_from_crammed, encoder_from_crammed
from .variants import (VARIANTS, FlatFFF, TopKFFF, ReLUFFF, ForestFFF, HypercubeFFF, RecursiveFFF, SoftTreeFFF, GeluFFF,
                       ortho_penalty, ortho_loss)
from .leaf import LeafFFF, LocalSGD, LocalAdam, hardening_loss, leaf_from_fastfeedforward, leaf_to_fastfeedforward
# Forward-Forward training lives in its own namespace (`from fff_nb.forward_forward import FFNet, FFC, FFRNN, FFFLayer, ...`;
# `fff_nb.ff` is its old name, an alias of the same module);
# the optional backends register themselves on import: `fff_nb.triton`, `fff_nb.jax` (extras `[triton]`, `[jax]`).
