"""Full fine-tuning: the baseline every parameter-efficient method is compared with."""

from peftkit import hookimpl
from peftkit_plugins.full.method import FullMethod


@hookimpl
def peftkit_register_methods():
    return [FullMethod()]
