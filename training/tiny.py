"""A tiny randomly initialised student, built locally: nothing is downloaded.

The smoke recipe and the tests train it on CPU in seconds. Its tokenizer is a byte-level BPE trained with
the ``tokenizers`` library on the run's own texts, wrapped as a ``transformers`` fast tokenizer with one of
four chat formats (ChatML, Llama-2, Mistral, Gemma); its model is a Llama- or Mistral-shaped decoder with
the shape the recipe gives. Both save and load back with ``from_pretrained`` like any checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skillmix.training.config import TinyModel

# The chat formats of the students of 2409.19808 and of today's small instruct models.
CHAT_TEMPLATES = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    "llama-2": (
        "{% for m in messages %}{% if m['role'] == 'user' %}"
        "{{ bos_token + '[INST] ' + m['content'].strip() + ' [/INST]' }}"
        "{% else %}{{ ' ' + m['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
    ),
    "mistral": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
        "{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ m['content'] + eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "gemma": (
        "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' "
        "else m['role'] %}{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + '<end_of_turn>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
    ),
}
TURN_TOKENS = {"chatml": ["<|im_start|>", "<|im_end|>"], "gemma": ["<start_of_turn>", "<end_of_turn>"]}
BOS, EOS, PAD = "<s>", "</s>", "<pad>"


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512, chat_format: str = "chatml") -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, with ``chat_format``'s template and turn tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, *TURN_TOKENS.get(chat_format, [])]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=TURN_TOKENS.get(chat_format, []),
    )
    tokenizer.chat_template = CHAT_TEMPLATES[chat_format]
    return tokenizer


def build_model(spec: TinyModel, tokenizer: Any, max_length: int) -> Any:
    """A randomly initialised decoder of ``spec``'s shape (seeded), sized to ``tokenizer``'s vocabulary."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig

    kind = {"llama": LlamaConfig, "mistral": MistralConfig}[spec.architecture]
    config = kind(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=max(max_length, 128),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def tokenizer_corpus(conversations: list[list[dict[str, str]]], texts: list[str]) -> list[str]:
    """What the tiny tokenizer is trained on: every turn of every conversation, and the plain texts."""
    return [m["content"] for messages in conversations for m in messages] + list(texts)
