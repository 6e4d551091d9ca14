"""Files -> examples -> model inputs: tables and CoNLL files read into examples (tables, examples), their
label set (labels), raw text split into words (words), examples tokenized and aligned to words
(encoding, windows), batches padded (collate); a run's reading options together (task) and the inputs
of `lsllm predict` (inputs)."""
