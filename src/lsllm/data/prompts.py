"""Put each text into a prompt, so that the pooled last token is where the model would say its answer.

A decoder's last state after "Review: ...\nSentiment:" already leans towards the answer words; after the
bare sentence it does not. With the head started from those words' rows (modeling/head_init.py), training
starts from what the model knows (issue 13: SST-2 after 64 steps, 74.3 bare against 87.0 templated).
"""

from __future__ import annotations

from dataclasses import dataclass

from lsllm.data.examples import SequenceExample
from lsllm.errors import LsllmError


@dataclass(frozen=True)
class Prompt:
    """A format string with {text} (and {text_pair} for pairs), optionally inside the model's chat template
    as the user's turn, with the assistant's turn opened after it."""

    template: str
    chat: bool
    tokenizer: object

    def format(self, text: str, text_pair: str | None) -> str:
        values = {"text": text} if text_pair is None else {"text": text, "text_pair": text_pair}
        try:
            content = self.template.format(**values)
        except (KeyError, IndexError, ValueError) as error:
            raise LsllmError(
                f"--template {self.template!r} cannot be filled ({type(error).__name__}: {error}); use"
                " {text} (and {text_pair} for pairs) and write other braces as {{ and }}"
            ) from None
        if not self.chat:
            return content
        if not getattr(self.tokenizer, "chat_template", None):
            raise LsllmError("this model's tokenizer has no chat template; leave out --chat-template")
        messages = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, example: SequenceExample, max_length: int) -> tuple[list[int], bool]:
        """Token ids of the filled prompt, and whether the text (never the template) was cut to fit."""
        add_special = not self.chat  # a chat template writes its own special tokens
        ids = self._ids(self.format(example.text, example.text_pair), add_special)
        if len(ids) <= max_length:
            return ids, False
        overhead = len(self._ids(self.format("", "" if example.text_pair is not None else None), add_special))
        if overhead >= max_length:
            raise LsllmError(
                f"the --template alone is {overhead} tokens, not fewer than --max-length {max_length};"
                " shorten the template or raise --max-length"
            )
        text, pair = example.text, example.text_pair
        while len(ids) > max_length:  # cut the longer text, keeping its start, until the prompt fits
            excess = len(ids) - max_length
            if pair is not None and len(pair) > len(text):
                pair = self._cut(pair, excess)
            else:
                text = self._cut(text, excess)
            ids = self._ids(self.format(text, pair), add_special)
        return ids, True

    def _ids(self, text: str, add_special: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=add_special)["input_ids"]

    def _cut(self, text: str, excess: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer.decode(ids[: max(0, len(ids) - excess)])
