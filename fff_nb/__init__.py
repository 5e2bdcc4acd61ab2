# Hand-maintained (nbdev_export only rewrites __version__): the public names of fff_nb.
__version__ = "0.1.0"

from .core import FFF
