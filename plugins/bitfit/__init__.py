"""BitFit: fine-tune only the bias terms (Ben Zaken et al., 2022)."""

from peftkit import hookimpl
from peftkit_plugins.bitfit.method import BitFitMethod


@hookimpl
def peftkit_register_methods():
    return [BitFitMethod()]
