"""The typed schema of a spec file, as written (before loops are expanded).

Pydantic models with ``extra="forbid"``: an unknown key is an error, not a silent no-op.
Strings may contain template expressions (``eps(l)``, ``z(l-1)``); they are expanded by
:mod:`hiervae.language.templates` after this schema has checked the shape of the document.
``hiervae schema`` publishes :func:`json_schema` for editors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


PositiveInt = Annotated[StrictInt, Field(gt=0)]  # strict: `latent: true` is not a dimension
MAX_SIZE = 1 << 24  # any one size in a spec: a dimension, a width, a count
Size = Annotated[StrictInt, Field(gt=0, le=MAX_SIZE)]
MAX_COUNT = 1024  # any count of repeated modules an option asks for: flows, steps, bins, splines


# ---------------------------------------------------------------- networks
class NetworkSpec(_Strict):
    """A network template: an MLP trunk; the consumer adds its own output heads.

    ``out`` is the feature size of an encoder; for heads (Gaussian loc/scale, bijector
    parameters) the consumer fixes the output size and ``out`` must be omitted.
    ``extends`` copies another named template and overrides the keys given here.
    """

    extends: str | None = Field(None, description="name of a template in `networks` to start from")
    mlp: list[Size] | None = Field(None, description="hidden layer sizes")
    activation: str | None = Field(None, description="hidden activation (relu, tanh, elu, ...)")
    out: Size | None = Field(None, description="output feature size (encoders)")
    out_activation: str | None = Field(None, description="activation of the output layer")
    batch_norm: bool | None = Field(None, description="batch norm at the input of each layer")
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    separate: bool | None = Field(None, description="one network per output head (paper) instead of a shared trunk")
    resnet: list[Size] | None = Field(None, description="convolutional ResNet blocks: filters per block")
    scale: Literal["down", "up"] | None = Field(None, description="each ResNet block halves (down) or doubles (up) the feature map")
    kernel: Annotated[StrictInt, Field(gt=0, le=99)] | None = Field(None, description="convolution kernel size")
    shared: bool | None = Field(None, description="one instance: every `net:` or encoder that names this template uses "
                                                  "the same module (weights shared, counted once); not inherited by extends")


NetRef = Union[str, NetworkSpec]


# ---------------------------------------------------------------- model nodes
Shape = Union[Size, Annotated[list[Size], Field(min_length=1, max_length=8)]]


class LatentNodeSpec(_Strict):
    """A sampled latent node: ``eps3: {latent: 10, dist: normal, given: [z2], net: gauss}``."""

    latent: Shape = Field(description="dimension (or event shape) of the latent")
    dist: str = Field("normal", description="prior family; parameters are a network of `given` (learned constants when empty)")
    given: list[str] = Field(default_factory=list, description="model nodes the prior is conditioned on")
    net: NetRef | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="family-specific options")


class TransformNodeSpec(_Strict):
    """A deterministic node ``z = f(input; given)``, bijective in ``input`` when given."""

    transform: str = Field(description="transform kind, e.g. affine_lowrank")
    input: str | None = Field(None, description="the input in which the transform is bijective")
    given: list[str] = Field(default_factory=list, description="nodes its parameters are computed from")
    dim: Size | None = Field(None, description="output dimension (defaults to the input's)")
    net: NetRef | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="kind-specific options, e.g. {rank: 1}")


class ObservedNodeSpec(_Strict):
    """An observed node: ``x: {observed: [784], dist: bernoulli, given: [z1..z10], net: dec}``."""

    observed: Shape = Field(description="event shape of one data point")
    dist: str = Field("bernoulli", description="likelihood family")
    given: list[str] = Field(default_factory=list)
    net: NetRef | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class FeatureNodeSpec(_Strict):
    """A deterministic, non-bijective feature of other nodes: ``h2: {feature: 64, given: [z3, h3], net: td}``
    (a top-down state in the model; in the guide, a bottom-up pass of the data)."""

    feature: Size = Field(description="number of features")
    given: list[str] = Field(default_factory=list, description="what the features are computed from")
    net: NetRef | None = None


NODE_KINDS: dict[str, type[_Strict]] = {
    "latent": LatentNodeSpec,
    "transform": TransformNodeSpec,
    "observed": ObservedNodeSpec,
    "feature": FeatureNodeSpec,
}


class GuideFactorSpec(_Strict):
    """One guide factor q(latent | given): its family, conditioning set and networks."""

    dist: str = Field("normal", description="variational family (normal, iaf, ...)")
    given: list[str] = Field(default_factory=list, description="observed nodes and model nodes computable from earlier guide samples")
    encoders: dict[str, NetRef] = Field(default_factory=dict, description="per-input encoder network, applied before `net`")
    net: NetRef | None = None
    merge: Literal["prior"] | None = Field(None, description="'prior': precision-weighted merge with the model's prior (Ladder VAE)")
    options: dict[str, Any] = Field(default_factory=dict)


class LoopSpec(_Strict):
    """``for: l in 1..10`` followed by ``nodes:`` (model) or ``factors:`` (guide)."""

    for_: str = Field(alias="for", pattern=r"^\s*[A-Za-z_]\w*\s+in\s+.+\.\..+$", description="`VAR in START..END` (inclusive, integer expressions)")
    nodes: dict[str, dict[str, Any]] | None = None
    factors: dict[str, dict[str, Any]] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- data / train / eval
class DataSpec(_Strict):
    dataset: str | None = Field(None, description="mnist | fashion_mnist | kmnist | binarized_mnist | digits | cifar10 | "
                                                  "idx (a directory of MNIST-format files, data_dir) | a .npz/.npy/.pt file "
                                                  "| files (one file per split); unset or none: a model without data "
                                                  "(checked, rendered and compiled, not trained)")
    arrays: dict[str, str] | None = Field(None, description="observed node -> the dataset's array it is (images, labels, "
                                                            "or a file's array names); unset: the first observed node is "
                                                            "the first array")
    files: dict[Literal["train", "valid", "test"], str] | None = Field(
        None, description="dataset: files: one file per split (paths relative to the spec)")
    test: StrictInt | None = Field(None, ge=0, description="a user's single file: examples at its end held out as the "
                                                           "test split (unset: a tenth)")
    checksum: Literal["none"] | None = Field(None, description="dataset: idx: `none` says the files are the user's own "
                                                               "and have no published checksum")
    binarize: Literal["dynamic", "static", "none"] | None = Field(
        None, description="dynamic | static | none; unset: the dataset's own (mnist, digits: dynamic; binarized_mnist: "
                          "static; cifar10: none)")
    dequantize: Literal["none", "uniform"] = Field(
        "none",
        description="uniform: 8-bit pixels k become (k + u) / 256, u ~ U[0, 1), fresh noise in every training batch "
                    "and fixed seeded noise for validation/test (needs binarize: none); required by a continuous "
                    "density of pixels (a maf with logit_alpha); bits/dim are then reported",
    )
    validation: StrictInt | None = Field(None, ge=0, description="examples held out of the training set for validation; "
                                                                 "unset: the dataset's own (mnist 10000, digits 200, cifar10 5000)")
    data_dir: str | None = Field(None, description="offline data directory (else $HIERVAE_DATA, else the download cache)")


class AdamSpec(_Strict):
    name: Literal["adam", "adamw", "clipped_adam"] = Field(
        "adam", description="adam (L2 weight decay), adamw (decoupled weight decay), clipped_adam (pyro.optim.ClippedAdam: "
                            "gradients clamped elementwise to clip_norm, lr decayed by lrd per step; pyro engine)")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="L2 regularisation (paper: 1e-5); adamw: decoupled")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    clip_norm: float | None = Field(None, gt=0, description="clip each parameter's gradient to this norm before the "
                                                             "step (Pyro's clip_args; clipped_adam: its own clip, default 10)")
    lrd: float = Field(1.0, gt=0, le=1, description="clipped_adam: learning-rate decay per step")


class GeometricWarmup(_Strict):
    """Paper 5.1: train 2^n epochs at beta_n = 10^(n/N - 1), beta_0 = 0, scaled to `epochs`."""

    schedule: Literal["geometric"]
    levels: PositiveInt = 10
    epochs: PositiveInt = 1024


class LinearWarmup(_Strict):
    schedule: Literal["linear"]
    epochs: PositiveInt


class ConstantBeta(_Strict):
    schedule: Literal["constant"]
    beta: float = Field(1.0, ge=0)


Warmup = Annotated[Union[GeometricWarmup, LinearWarmup, ConstantBeta], Field(discriminator="schedule")]


class TrainSpec(_Strict):
    batch_size: PositiveInt = 256
    epochs: PositiveInt = 10
    seed: int = 0
    optimizer: AdamSpec = AdamSpec()
    lr_schedule: Literal["constant", "cosine"] = "constant"
    reconstruction_epochs: int = Field(0, ge=0, description="reconstruction-only phase (beta = 0) before warm-up")
    kl_warmup: Warmup = ConstantBeta(schedule="constant")
    free_bits: float = Field(0.0, ge=0, description="nats per layer group below which KL is not penalised")
    engine: Literal["direct", "pyro"] = Field(
        "direct", description="direct: hiervae's own evaluation of Pyro's loss (fast, tested equal); pyro: pyro.infer.SVI "
                              "with a pyro.optim optimiser")
    elbo: Literal["auto", "mean_field", "trace", "tracegraph", "renyi", "iwae"] = Field(
        "auto", description="auto: analytic KL (TraceMeanField_ELBO) where `check` allows it, else trace; mean_field, "
                            "trace, tracegraph (pyro engine): Pyro's ELBOs; renyi (pyro engine): RenyiELBO(alpha); "
                            "iwae: the importance-weighted bound with num_particles samples (RenyiELBO(0, K))")
    num_particles: PositiveInt = Field(1, description="samples per data point (iwae/renyi: the K of the bound)")
    renyi_alpha: float = Field(0.0, description="renyi: alpha (0: the IWAE bound; 1 is not allowed)")
    dreg: bool = Field(False, description="iwae on the direct engine: doubly-reparameterised gradients for the guide")
    early_stopping: StrictInt | None = Field(None, ge=1, description="stop after this many epochs without a better "
                                                                     "validation ELBO (patience)")
    compile: bool = Field(False, description="torch.compile the training loss")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: the networks' matmuls under bf16 autocast, their outputs, the log densities, KL and "
        "loss in float32, parameters and optimiser float32 (hiervae/nn/precision.py); evaluation stays fp32")
    max_nonfinite_steps: PositiveInt = Field(10, description="consecutive NaN/inf steps before stopping")


class EvalSpec(_Strict):
    importance_samples: PositiveInt = 1000
    chunk_size: PositiveInt = Field(100, description="importance samples per chunk (bounds memory)")
    batch_size: PositiveInt = 100
    active_units_threshold: float = Field(0.01, gt=0)
    compile: bool = Field(False, description="torch.compile each chunk's log weights (pays on long evaluations)")


# ---------------------------------------------------------------- document
ModelEntry = Union[LoopSpec, dict[str, dict[str, Any]]]
GuideEntry = Union[LoopSpec, dict[str, GuideFactorSpec]]


class SpecDocument(_Strict):
    """A whole spec file."""

    extends: str | None = Field(None, description="a spec file (relative to this one) this spec is laid over; "
                                                   "`model:`/`guide:` mappings patch its entries by name")
    name: str
    description: str = ""
    vars: dict[str, StrictInt] = Field(default_factory=dict, description="integers usable in templates, e.g. {L: 10}")
    data: DataSpec = DataSpec()
    networks: dict[str, NetworkSpec] = Field(default_factory=dict)
    model: list[dict[str, Any]] = Field(min_length=1, description="node declarations and `for` blocks, in order")
    guide: list[dict[str, Any]] = Field(default_factory=list, description="one factor per latent, in sampling order, "
                                                                          "and feature nodes of the data")
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if data is None:
            raise ValueError("the spec is empty")
        return data


def json_schema() -> dict[str, Any]:
    """A JSON Schema of the spec language, with node kinds spelt out for editors."""
    schema = SpecDocument.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for cls in (*NODE_KINDS.values(), GuideFactorSpec, LoopSpec):  # FeatureNodeSpec serves both sides
        sub = cls.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[cls.__name__] = sub
    node = {"anyOf": [{"$ref": f"#/$defs/{c.__name__}"} for c in NODE_KINDS.values()]}
    loop = {"$ref": "#/$defs/LoopSpec"}
    schema["properties"]["model"]["items"] = {"anyOf": [loop, {"type": "object", "additionalProperties": node}]}
    factor = {"anyOf": [{"$ref": "#/$defs/GuideFactorSpec"}, {"$ref": "#/$defs/FeatureNodeSpec"}]}
    schema["properties"]["guide"]["items"] = {"anyOf": [loop, {"type": "object", "additionalProperties": factor}]}
    schema["required"] = [r for r in schema.get("required", []) if r != "model"]  # an overlay inherits its model
    for section in ("model", "guide"):  # in a spec that extends another: patches by entry name
        schema["properties"][section] = {"anyOf": [schema["properties"][section],
                                                   {"type": "object", "additionalProperties": {"type": "object"}}]}
    defs["LoopSpec"]["properties"]["nodes"] = {"type": "object", "additionalProperties": node}
    defs["LoopSpec"]["properties"]["factors"] = {"type": "object", "additionalProperties": factor}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hiervae spec"
    return schema
