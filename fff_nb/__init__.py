# Hand-maintained (nbdev_export only rewrites __version__): the public names of fff_nb.
__version__ = "0.1.0"

from .core import FFF
from .ultrafastbert import UltraFFF, EncoderLayer, Encoder, ffns_from_crammed, encoder_from_crammed
from .variants import (VARIANTS, FlatFFF, TopKFFF, ReLUFFF, ForestFFF, HypercubeFFF, RecursiveFFF, SoftTreeFFF, GeluFFF,
                       ortho_penalty, ortho_loss)
