"""How much memory a training run needs per process, estimated from the model's shapes and the run's
options before any weight is loaded, so that a run that cannot fit says so, and names what would make it
fit, instead of failing after the model has loaded.

Per process, in bytes:
- weights: the frozen backbone as stored: fp32 4 bytes a weight, bf16 2, 8-bit 1, NF4 with its scales
  about 0.52 (linear layers only; embeddings and norms stay bf16). FSDP and ZeRO-3 shard them over the
  processes and gather one decoder layer at a time in full (two, with prefetching).
- trainable: LoRA and the head in fp32 with their gradients and AdamW's two moments, 16 bytes a weight;
  FSDP and ZeRO-3 shard all of it, ZeRO-2 all but the weights; DDP keeps one more copy of the gradients.
- activations: what the backward pass keeps from the forward pass, per token and decoder layer: both
  norms' inputs, q, k and v (repeated to every query head) and the attention output, the MLP's gate, up
  and activation (2h + 4q + 3i numbers), and the inputs of LoRA's A matrices: each distinct one once, or
  with dropout each layer's own dropped-out copy and its mask; eager attention's probabilities; one
  attention mask. With gradient checkpointing, each layer's input and one layer recomputed. One more
  layer's worth for the gradients in flight. (Measured with autograd's saved-tensor hooks on SmolLM2:
  tests/modeling/test_memory.py.)
- runtime: the process itself: Python, torch and transformers on a CPU (measured), the CUDA context and
  the allocator's slack on a GPU.
bench/results/memory compares these estimates with measured peaks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lsllm.config import TrainConfig

GiB = 2**30
ADAM_BYTES = 16  # a trainable fp32 weight, its gradient and AdamW's two moments
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits, an 8-bit scale per 64 weights, an fp32 one per 256 scales
# Python, torch, transformers and peft imported (measured: 0.51 GiB); the CUDA context and allocator slack.
RUNTIME = {"cpu": 0.5 * GiB, "cuda": 1.0 * GiB}
ENGINES = ("single", "ddp", "fsdp", "zero2", "zero3")
SHARDED = ("fsdp", "zero3")  # engines that shard the frozen weights too
# Llama-style linear layers that read the same input; a layer of another name counts as reading its own.
SHARED_INPUT = {
    "q_proj": "attention",
    "k_proj": "attention",
    "v_proj": "attention",
    "gate_proj": "mlp",
    "up_proj": "mlp",
}


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder the estimate depends on, read from its config (no weights needed)."""

    layers: int
    hidden: int
    q_dim: int
    kv_dim: int
    intermediate: int
    heads: int
    linears: dict[str, tuple[int, int, int]]  # a linear layer's name -> (in, out, how many in the model)
    other_weights: int  # embeddings, norms and biases

    @classmethod
    def from_config(cls, config) -> ModelShape:
        """Count every weight of the bare decoder built on the meta device: exact for any architecture."""
        import torch
        from torch import nn
        from transformers import AutoModel

        with torch.device("meta"):
            model = AutoModel.from_config(config)
        linears: dict[str, tuple[int, int, int]] = {}
        in_linears = 0
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                short = name.rsplit(".", 1)[-1]
                count = linears.get(short, (0, 0, 0))[2] + 1
                linears[short] = (module.in_features, module.out_features, count)
                in_linears += module.weight.numel()
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        total = sum(p.numel() for p in model.parameters())
        return cls(
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            q_dim=heads * head_dim,
            kv_dim=kv_heads * head_dim,
            intermediate=getattr(config, "intermediate_size", None) or 4 * config.hidden_size,
            heads=heads,
            linears=linears,
            other_weights=total - in_linears,
        )

    @classmethod
    def from_pretrained(cls, path: str, trust_remote_code: bool = False) -> ModelShape:
        from transformers import AutoConfig

        return cls.from_config(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code))

    @property
    def linear_weights(self) -> int:
        return sum(fan_in * fan_out * count for fan_in, fan_out, count in self.linears.values())

    @property
    def weights(self) -> int:
        return self.linear_weights + self.other_weights

    def lora_weights(self, r: int, targets: list[str] | None) -> int:
        """LoRA's A and B on every linear layer named in `targets` (default: all)."""
        chosen = targets or list(self.linears)
        return sum(r * (i + o) * n for name, (i, o, n) in self.linears.items() if name in chosen)

    def lora_inputs(self, targets: list[str] | None, dropout: bool) -> float:
        """Numbers per token and decoder layer that LoRA's A matrices keep beyond what attention and the
        MLP keep anyway: with dropout, each its own dropped-out copy of its input; without, each distinct
        input once (q, k and v read one, gate and up another; o reads the attention output)."""
        chosen = {
            name: fan_in * count / self.layers
            for name, (fan_in, _, count) in self.linears.items()
            if name in (targets or self.linears)
        }
        if dropout:
            return sum(chosen.values())
        distinct = {SHARED_INPUT.get(name, name): size for name, size in chosen.items() if name != "o_proj"}
        return sum(distinct.values())


@dataclass(frozen=True)
class Setup:
    """What the estimate depends on besides the model: the run's options and where it trains."""

    batch_size: int
    length: int  # tokens of the longest row of a batch
    precision: str  # fp32 or bf16: the number format of the frozen weights and the activations
    grad_accum: int = 1
    quantize: str = "none"  # none, 4bit or 8bit
    gradient_checkpointing: bool = False
    lora_r: int = 12
    lora_targets: list[str] | None = None
    lora_dropout: float = 0.1
    num_labels: int = 2
    eager_attention: bool = False
    processes: int = 1
    engine: str = "single"
    device: str = "cpu"  # cpu or cuda

    @classmethod
    def for_run(cls, config: TrainConfig, precision: str, length: int, num_labels: int, **where) -> Setup:
        """The setup of a run's options; `where` says how many processes on which device and engine."""
        return cls(
            batch_size=config.batch_size,
            length=min(length, config.max_length),
            precision=precision,
            grad_accum=config.grad_accum,
            quantize=config.quantize,
            gradient_checkpointing=config.gradient_checkpointing,
            lora_r=config.lora_r,
            lora_targets=config.lora_targets,
            lora_dropout=config.lora_dropout,
            num_labels=num_labels,
            eager_attention=config.attn_implementation == "eager",
            **where,
        )


@dataclass(frozen=True)
class Estimate:
    """Peak memory of one training process, in bytes, by what takes it."""

    weights: int
    trainable: int
    activations: int
    runtime: int

    @property
    def total(self) -> int:
        return self.weights + self.trainable + self.activations + self.runtime

    def describe(self) -> str:
        parts = (
            f"weights {gib(self.weights)}, LoRA + head + optimiser {gib(self.trainable)},"
            f" activations {gib(self.activations)}, runtime {gib(self.runtime)}"
        )
        return f"{gib(self.total)} GiB ({parts})"


def gib(size: float) -> str:
    return f"{size / GiB:.1f}"


def bytes_per_number(setup: Setup) -> int:
    """Activations and unquantised frozen weights: fp32, or bf16 (also the compute format of 4/8-bit)."""
    return 4 if setup.precision == "fp32" and setup.quantize == "none" else 2


def layer_activations(shape: ModelShape, setup: Setup) -> float:
    """Bytes one decoder layer keeps for the backward pass, per token."""
    # Both norms' inputs; q, k and v (repeated to every query head, as the kernels keep them under a mask)
    # and the attention output; the MLP's gate, up and activation.
    numbers = 2 * shape.hidden + 4 * shape.q_dim + 3 * shape.intermediate
    if setup.eager_attention:
        numbers += shape.heads * setup.length  # the attention probabilities
    dropout = setup.lora_dropout > 0
    inputs = shape.lora_inputs(setup.lora_targets, dropout)
    return (numbers + inputs) * bytes_per_number(setup) + (inputs if dropout else 0)  # dropout's byte masks


def kept_activations(shape: ModelShape, setup: Setup) -> float:
    """Bytes the forward pass of one batch keeps for the backward pass: every layer's activations (with
    gradient checkpointing, only each layer's input) and one attention mask that the layers share."""
    tokens = setup.batch_size * setup.length
    if setup.gradient_checkpointing:
        per_layer = shape.hidden * bytes_per_number(setup)
    else:
        per_layer = layer_activations(shape, setup)
    mask = setup.batch_size * setup.length**2 * bytes_per_number(setup)
    return tokens * shape.layers * per_layer + mask


def estimate(shape: ModelShape, setup: Setup) -> Estimate:
    """The peak memory of one training process (see the module's docstring for what is counted)."""
    shards = setup.processes if setup.engine in ("fsdp", "zero2", "zero3") else 1
    number = bytes_per_number(setup)
    linear = {"4bit": NF4_BYTES, "8bit": 1.0}.get(setup.quantize, number)
    weights = shape.linear_weights * linear + shape.other_weights * number
    if setup.engine in SHARDED and shards > 1:
        weights = weights / shards + 2 * number * shape.linear_weights / shape.layers  # two layers gathered

    head = shape.hidden * setup.num_labels + setup.num_labels
    trainable = shape.lora_weights(setup.lora_r, setup.lora_targets) + head
    per_weight = {
        "fsdp": ADAM_BYTES / shards,
        "zero3": ADAM_BYTES / shards,
        "zero2": 4 + (ADAM_BYTES - 4) / shards,
        "ddp": ADAM_BYTES + 4,  # DDP's gradient buckets
    }.get(setup.engine, ADAM_BYTES)
    trainable_bytes = trainable * per_weight + head * 4  # and peft's untrained copy of the head

    # The gradients inside the layer being differentiated, and with checkpointing that layer recomputed.
    in_flight = (
        (1 + setup.gradient_checkpointing) * setup.batch_size * setup.length * layer_activations(shape, setup)
    )
    activations = kept_activations(shape, setup) + in_flight

    return Estimate(
        weights=round(weights),
        trainable=round(trainable_bytes),
        activations=round(activations),
        runtime=round(RUNTIME[setup.device]),
    )


def ways_to_fit(shape: ModelShape, setup: Setup, available: float) -> list[str]:
    """Options that would bring the estimate under `available` bytes, as the flags to pass, each with its
    estimate: gradient checkpointing, a smaller batch with as much accumulation (the same global batch),
    4-bit weights, or FSDP over more GPUs; the first few that fit."""
    options: list[tuple[str, Setup]] = []
    if not setup.gradient_checkpointing:
        options.append(("--gradient-checkpointing", dataclasses.replace(setup, gradient_checkpointing=True)))
    smaller = [
        dataclasses.replace(setup, batch_size=b, grad_accum=setup.grad_accum * setup.batch_size // b)
        for b in range(setup.batch_size - 1, 0, -1)
        if setup.batch_size % b == 0
    ]
    fitting_batch = next((s for s in smaller if estimate(shape, s).total <= available), None)
    if fitting_batch is not None:
        flags = f"--batch-size {fitting_batch.batch_size} --grad-accum {fitting_batch.grad_accum}"
        options.append((flags, fitting_batch))
    if setup.device == "cuda":
        if setup.quantize != "4bit":
            options.append(("--quantize 4bit", dataclasses.replace(setup, quantize="4bit")))
        for gpus in (2, 4, 8, 16, 32, 64):
            if gpus > setup.processes:
                sharded = dataclasses.replace(setup, processes=gpus, engine="fsdp")
                options.append((f"FSDP over {gpus} GPUs (examples/accelerate/fsdp2.yaml)", sharded))
    fitting = [
        f"{flags} (about {gib(estimate(shape, changed).total)} GiB)"
        for flags, changed in options
        if estimate(shape, changed).total <= available
    ]
    return fitting[:3]


def verdict(shape: ModelShape, setup: Setup, available: float) -> tuple[Estimate, str | None]:
    """The estimate, and if it exceeds `available` bytes, a warning that names what would make it fit."""
    planned = estimate(shape, setup)
    if planned.total <= available:
        return planned, None
    fixes = ways_to_fit(shape, setup, available)
    advice = (
        f"it would fit with {'; or '.join(fixes)}"
        if fixes
        else "no single option makes it fit; combine them ('lsllm plan' estimates any combination)"
    )
    warning = (
        f"training may run out of memory: it needs about {gib(planned.total)} GiB per process, and"
        f" {gib(available)} GiB are available to each; {advice}"
    )
    return planned, warning


def available_memory(device: str, local_processes: int) -> float:
    """Bytes one process may use: its GPU's free memory, or its share of the machine's available RAM."""
    if device == "cuda":
        import torch

        return float(torch.cuda.mem_get_info()[0])
    import psutil

    return psutil.virtual_memory().available / local_processes


def planned_precision(precision: str, device: str) -> str:
    """The number format a run would train in on `device`, also when planning for a GPU from a machine
    without one (where auto means bf16, as on any GPU of the last years)."""
    import torch

    from lsllm.modeling.precision import resolve_precision

    if device == "cuda" and not torch.cuda.is_available():
        return "fp32" if precision == "fp32" else "bf16"
    return resolve_precision(precision, torch.device(device))


def format_plan(
    shape: ModelShape, setup: Setup, planned: Estimate, available: float, warning: str | None
) -> str:
    """The estimate as `lsllm plan` prints it: what it is for, each part, the total against what is free."""
    trained = shape.lora_weights(setup.lora_r, setup.lora_targets) / 1e6
    run = [f"batch {setup.batch_size} x {setup.length} tokens", setup.precision]
    if setup.quantize != "none":
        run.append(f"{setup.quantize} weights")
    if setup.gradient_checkpointing:
        run.append("gradient checkpointing")
    how = f"{setup.processes} processes ({setup.engine})" if setup.processes > 1 else "1 process"
    run.append(f"{how} on {setup.device}")
    rows = [
        ("model", f"{shape.weights / 1e6:,.1f}M weights, {trained:,.1f}M in LoRA r={setup.lora_r}"),
        ("run", ", ".join(run)),
        ("weights", f"{gib(planned.weights)} GiB"),
        ("LoRA + head + optimiser", f"{gib(planned.trainable)} GiB"),
        ("activations", f"{gib(planned.activations)} GiB"),
        ("runtime", f"{gib(planned.runtime)} GiB"),
        ("total", f"{gib(planned.total)} GiB per process"),
        ("available", f"{gib(available)} GiB per process: {'fits' if warning is None else 'does not fit'}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines + ([warning] if warning else []))
