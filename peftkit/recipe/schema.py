"""The core recipe schema: one pydantic model per section, unknown keys refused (``extra="forbid"``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from peftkit.recipe.problems import shown

MAX_INT = 2**63 - 1  # what torch and the OS take as a count; a larger number is a typo, never a setting


class _Strict(BaseModel):
    """Unknown keys refused; every number finite (``.inf``/``1e309``/``.nan`` refused at validate time, not met as
    a NaN loss mid-run) and every integer within :data:`MAX_INT`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_int(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
            raise ValueError(f"must be at most 2**63-1, got {shown(v)}")
        return v


class QuantizationConfig(_Strict):
    bits: Literal[4, 8] = Field(description="Quantize the base model's linear layers to 4 or 8 bits (bitsandbytes).")
    type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type; nf4 suits normally distributed weights.")
    double_quant: bool = Field(
        True, description="4-bit only: also quantize the quantization constants (saves ~0.4 bit/param)."
    )
    compute_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype of matmuls in 4-bit layers; bfloat16 on GPUs that support it."
    )


class ModelConfig(_Strict):
    source: str = Field(
        description="Model reference `scheme:name`: `packaged:multilingual-e5-small`, `hub:bert-base-chinese`, "
        "`local:/path` (a bare path also works), `run:runs/mlm-news` (a finished run's model, its method merged: "
        "pretrain, then fine-tune). See `peftkit plugins` for the schemes installed."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for `hub:` models.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; `auto` = float32 on CPU, the checkpoint's dtype otherwise."
    )
    quantization: QuantizationConfig | None = Field(None, description="Load the base quantized (QLoRA); null = off.")
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with a hub checkpoint. Off unless you trust it."
    )
    allow_pickle: bool = Field(
        False, description="Allow loading `.bin`/`.pt` (pickle) weights; safetensors only when false."
    )

    @field_validator("quantization", mode="before")
    @classmethod
    def _quantization_mapping(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, (dict, QuantizationConfig)):
            raise ValueError(f"must be a mapping such as {{bits: 4}} (or null for none), got {shown(v)}")
        return v


class MethodConfig(_Strict):
    name: str = Field(
        description="Registered method name (`peftkit plugins` lists them): lora, adalora, adapters, full, ..."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Method parameters, validated by the method plugin."
    )


class TaskConfig(_Strict):
    name: str = Field(description="Registered task name, e.g. `clue/afqmc` or `text-classification`.")
    params: dict[str, Any] = Field(default_factory=dict, description="Task parameters, validated by the task plugin.")
    objective: str | None = Field(
        None,
        description="Train the task through this objective instead of its own (one marked as overriding, e.g. "
        "`label-likelihood` to score a classification task's labels by their likelihood on a decoder); null = the task's.",
    )


class DataConfig(_Strict):
    max_length: int = Field(
        128, gt=0, description="Tokens per example after truncation. Longer = slower, rarely better on CLUE."
    )
    group_by_length: bool = Field(
        True, description="Batch examples of similar length (still shuffled) so less padding is computed: faster."
    )
    truncation_warning: bool = Field(
        True, description="Warn with how many examples were longer than max_length and truncated."
    )
    selection_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="With eval.split: selection, the share of training rows held out (per label, by train.seed) "
        "to evaluate on; the run trains on the rest.",
    )


class TrainConfig(_Strict):
    epochs: float = Field(3, gt=0, description="Passes over the training set (fractions allowed).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(32, gt=0, description="Examples per forward pass (per process).")
    grad_accum: int = Field(
        1, gt=0, description="Forward passes per optimizer step; effective batch = batch_size × grad_accum × processes."
    )
    lr: float | None = Field(
        None, gt=0, description="Peak learning rate; null = the method's default (LoRA 1e-3, full 3e-5, ...)."
    )
    head_lr: float | None = Field(
        None,
        gt=0,
        description="Learning rate of the task head (the modules the objective names as its head: a classifier, a "
        "pooler the checkpoint lacked), as its own optimizer group under the same schedule; null = train.lr. A "
        "randomly initialised head beside a LoRA body may need more: on People's Daily NER, LoRA at lr 1e-3 "
        "with the head at 1e-3 learned no entity (docs: tasks, NER).",
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to biases and LayerNorm).")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    scheduler: Literal["linear", "cosine", "constant"] = Field("linear", description="Decay after warmup.")
    warmup: float = Field(0.06, ge=0, description="Warmup: a fraction of total steps if < 1, else a number of steps.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip gradients to this norm; null = no clipping.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast for training and every evaluation of the run; `auto` = bf16 on GPUs that support "
        "it, none on CPU. `bf16` also runs on CPUs with AVX512-BF16 (measured: evaluation 1.7× faster, same accuracy).",
    )
    seed: int = Field(
        42,
        ge=0,
        le=2**32 - 1,
        description="Seed for weights, dropout and data order (set before any weight is created).",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~30% slower."
    )
    compile: bool = Field(
        False,
        description="torch.compile the model for training (through Accelerate: inductor, each repeated transformer "
        "block compiled once, dynamic shapes). Pays on GPUs over long runs; on a 2-core CPU it cost ~1 min of compiling "
        "and gained nothing (measured). Evaluation stays eager.",
    )
    log_every: int = Field(
        10,
        gt=0,
        description="Every N optimizer steps, log the mean training loss of those N steps "
        "(TensorBoard and metrics.json keep every step's).",
    )
    checkpoint_every: int | None = Field(
        None,
        gt=0,
        description="Write a resumable checkpoint every N optimizer steps (always at epoch ends); null = epoch ends only.",
    )
    keep_checkpoints: int = Field(
        2, gt=0, description="How many of the newest resumable checkpoints to keep (the best model is kept separately)."
    )

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v: Any) -> Any:
        return "no" if v is False else v  # YAML reads a bare `no` as false

    @field_validator("adam_betas", mode="before")
    @classmethod
    def _two_betas(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ValueError(f"must be two numbers [beta1, beta2], e.g. [0.9, 0.999], got {shown(v)}")
        return v

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class EvalConfig(_Strict):
    every: Literal["epoch"] | int = Field(
        "epoch", description="Evaluate on dev every epoch, or every N optimizer steps."
    )
    metric: str | None = Field(
        None, description="Metric that picks the best checkpoint; null = the task's main metric."
    )
    batch_size: int | None = Field(
        None,
        gt=0,
        description="Evaluation batch size; null = train.batch_size in float32, 4 × train.batch_size under "
        "bf16/fp16 mixed precision (batches are sorted by length; on a 2-core CPU float32 peaks at 32, bf16 at ~128).",
    )
    merged: bool = Field(
        True,
        description="Final evaluation and test predictions use the saved model with the method merged into a copy "
        "of the base weights, when the method can merge and the base is not quantized: the same function up to float "
        "rounding, and faster (LoRA on CPU: ~1.3×). Evaluations during training always use the unmerged model.",
    )
    predict: bool = Field(
        False, description="After training, write test-split predictions in the task's submission format."
    )
    split: Literal["dev", "selection"] = Field(
        "dev",
        description="What evaluations (best checkpoint, final metrics) score: dev, or `selection` = "
        "data.selection_fraction of the training rows, held out from training, so choosing settings on it "
        "leaves dev an honest estimate (what a compare file's `search:` uses by default).",
    )

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> Any:
        if v == "epoch" or (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            return v
        raise ValueError(f"must be 'epoch' or a number of steps > 0, got {shown(v)}")


class Recipe(_Strict):
    """A whole run: model × method × task × training settings."""

    model: ModelConfig
    method: MethodConfig
    task: TaskConfig
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output_dir: str = Field(description="Folder for the adapter/weights, metrics.json, logs and TensorBoard events.")
    plugins: list[str] | None = Field(
        None,
        description="Allow-list of installed plugins (names as `peftkit plugins` shows them) this recipe uses: "
        "its method, task and model source must come from them, and only their hooks run (leave out `tensorboard` "
        "and no TensorBoard events are written). null = every installed plugin.",
    )
    plugins_config: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings of plugins that are neither the method nor the task, one section per plugin "
        "(`plugins_config: {early_stopping: {patience: 3}, mlflow: {}}`), each checked by that plugin's own model; "
        "`peftkit plugins` lists which plugins take one. Most such plugins are off unless their section is present.",
    )

    @field_validator("output_dir", mode="before")
    @classmethod
    def _folder(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)  # output_dir=2024 on the command line reads as a number
        if isinstance(v, str) and not v.strip():
            raise ValueError("must name a folder, e.g. runs/my-run")
        return v
