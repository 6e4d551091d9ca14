"""Start the head from what the model knows: each label's row is the language-model head's row of the
label's word, so that at step 0 the head's logits are the model's own next-word logits for those words
(zero-shot prompting, restricted to the labels) and training refines them rather than starting blind."""

from __future__ import annotations

from pathlib import Path

import torch

from lsllm.errors import LsllmError, first_line


def tag_words(tags: list, given: list[str] | None) -> list[str]:
    """The word for each tag of a token task: its entity type's (B-PER and I-PER both say " person" given
    PER=person; a pair for the tag itself wins), by default the type in lower case after a space; O is
    " other" unless given."""
    chosen = dict(entry.split("=", 1) for entry in given or [])
    types = {str(tag): str(tag).split("-", 1)[-1] for tag in tags}
    unknown = sorted(set(chosen) - set(types) - set(types.values()))
    if unknown:
        raise LsllmError(
            f"--label-words names tags or entity types the run does not have ({', '.join(unknown)}); its"
            f" tags are: {', '.join(types)}"
        )
    fallback = {tag: " other" if tag == "O" else f" {kind.lower()}" for tag, kind in types.items()}
    return [chosen.get(tag) or chosen.get(kind) or fallback[tag] for tag, kind in types.items()]


def label_word_rows(
    tokenizer, lm_rows: torch.Tensor, words: list[str], distinct: bool = True
) -> torch.Tensor:
    """One head row per word: the language-model head's row of the token the model would say first, so
    that at step 0 the head scores what zero-shot prompting scores. Different words that start with the
    same token ("very negative", "very positive") would get the same row, so each of those gets the mean
    of its tokens' rows instead. Unless `distinct` is off (the tags of one entity type share their word),
    two labels may not have the same word."""
    ids = []
    for word in words:
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise LsllmError(f"label word {word!r} has no tokens; give another with --label-words")
        ids.append(tokens)
    repeated = sorted({word for word in words if words.count(word) > 1})
    if distinct and repeated:
        raise LsllmError(
            f"label word(s) {', '.join(map(repr, repeated))} name several labels, so their rows would be the"
            " same; give each label its own word with --label-words LABEL=WORD"
        )
    starts = {}
    for word, tokens in zip(words, ids, strict=True):
        starts.setdefault(tokens[0], set()).add(word)
    rows = torch.stack(
        [
            lm_rows[tokens].float().mean(0) if len(starts[tokens[0]]) > 1 else lm_rows[tokens[0]].float()
            for tokens in ids
        ]
    )
    alike = sorted(
        {
            words[k]
            for i in range(len(words))
            for j in range(i + 1, len(words))
            if words[i] != words[j] and torch.allclose(rows[i], rows[j])
            for k in (i, j)
        }
    )
    if alike:
        raise LsllmError(
            f"label words {', '.join(map(repr, alike))} are made of the same tokens, so their rows would be"
            " the same; give words that differ with --label-words LABEL=WORD"
        )
    return rows


def output_embeddings(path: str, backbone: torch.nn.Module) -> torch.Tensor:
    """The language-model head's weight (vocabulary x hidden): the input embeddings when the model ties
    them, else `lm_head.weight` from the model folder's safetensors files (the bare decoder lsllm loads
    does not have it)."""
    if getattr(backbone.config, "tie_word_embeddings", False):
        return backbone.get_input_embeddings().weight
    folder = Path(path)
    if not folder.is_dir():  # a hub id: its weight files, from the hub cache or the hub
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(path, allow_patterns=["*.safetensors"]))
        except Exception as error:  # offline, unknown repository: all mean the same here
            raise LsllmError(
                f"cannot fetch the weights of {path} for --head-init label-words ({first_line(error)});"
                " pass a local model folder or use --head-init random"
            ) from None
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            names = handle.keys()
            key = next((k for k in names if k == "lm_head.weight" or k.endswith(".lm_head.weight")), None)
            if key is not None:
                return handle.get_tensor(key)
    raise LsllmError(
        f"model {path} has no language-model head weights (lm_head.weight) to start the head from;"
        " use --head-init random"
    )


@torch.no_grad()
def init_head_from_label_words(head: torch.nn.Linear, rows: torch.Tensor) -> None:
    """`rows` (one per label, from label_word_rows) become the head's weight; a bias starts at zero."""
    head.weight.copy_(rows.to(head.weight.dtype))
    if head.bias is not None:
        head.bias.zero_()
