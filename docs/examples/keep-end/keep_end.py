"""keep_end.py: a sequence-classification objective that keeps the END of a text too long for data.max_length
(the last turn of a customer-service dialogue is the one that says what the customer wants)."""

from peftkit import DataError, Example, hookimpl
from peftkit.kit import check_labels, classifier_heads, encode, row_logits, row_name, scores


class KeepEndClassification:
    name = "keep-end-classification"
    summary = "One label per text; a text over data.max_length loses its beginning, not its end."
    auto_class = "AutoModelForSequenceClassification"
    labelled = True  # rows carry label ids; a prediction is one label id a row

    def check_rows(self, examples, where, split, n_labels):
        for i, e in enumerate(examples):
            if e.choices is not None:
                raise DataError(f"{row_name(where, i, e)} has choices; {self.name} reads a text (or a pair)")
        check_labels(examples, where, split, n_labels)

    def encode(self, examples, tokenizer, ctx):
        side, tokenizer.truncation_side = tokenizer.truncation_side, "left"
        try:
            return encode(examples, tokenizer, ctx.max_length, use_token_types=ctx.use_token_types, split=ctx.split)
        finally:
            tokenizer.truncation_side = side

    def model_kwargs(self, labels):
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels))}

    def head_modules(self, model, missing_keys):
        return classifier_heads(model, missing_keys)  # the new classifier trains under every method

    def score(self, outputs, data, task):
        logits, loss = row_logits(outputs, len(data))
        preds = logits.argmax(-1)
        if not (data.labels >= 0).all():  # an unlabelled test split: predictions only
            return {}, preds
        return scores(task, preds, data.labels, loss), preds

    def sample_examples(self, n, seed):  # rows the conformance suite trains on
        from peftkit.kit.tiny import sentiment_rows

        return [Example(r["text"], label=int(r["label"] == "pos"), id=r["id"]) for r in sentiment_rows(n, seed)]


@hookimpl
def peftkit_register_objectives():
    return [KeepEndClassification()]
