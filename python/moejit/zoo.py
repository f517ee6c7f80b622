"""Model shapes: the dimensions of the MoE layers moejit specialises kernels for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """One MoE layer's shape. `tokens` is a typical number of tokens per GPU per step,
    used for benchmarks and tuning; the kernels themselves take any token count."""

    name: str
    hidden: int        # model (hidden) size H
    ffn: int           # each expert's ffn size F
    experts: int       # E
    top_k: int         # experts per token
    tokens: int        # tokens per GPU per step T
    activation: str    # "gelu" or "silu"
    glu: bool          # gated (SwiGLU-style: a third weight matrix)

    def describe(self) -> str:
        return (f"{self.name}: hidden {self.hidden}, ffn {self.ffn}, {self.experts} experts, top-{self.top_k}, "
                f"{self.tokens} tokens, {self.activation}{' (GLU)' if self.glu else ''}")


# Published model configurations; the three in ../shared/bench/ANCHORS.md use its token
# counts. The MegaBlocks paper's dMoE models (Table 2 of arXiv:2211.15841) are 64-expert,
# top-1 layers with ffn = 4 x hidden.
_SHAPES = [
    ModelShape("mixtral-8x7b", 4096, 14336, 8, 2, 8192, "silu", True),
    ModelShape("olmoe-1b-7b", 2048, 1024, 64, 8, 16384, "silu", True),
    ModelShape("qwen3-30b-a3b", 2048, 768, 128, 8, 16384, "silu", True),
    ModelShape("deepseek-v2-lite", 2048, 1408, 64, 6, 16384, "silu", True),
    ModelShape("qwen1.5-moe-a2.7b", 2048, 1408, 60, 4, 16384, "silu", True),
    ModelShape("megablocks-dmoe-xs", 512, 2048, 64, 1, 16384, "gelu", False),
    ModelShape("megablocks-dmoe-small", 768, 3072, 64, 1, 16384, "gelu", False),
    ModelShape("megablocks-dmoe-medium", 1024, 4096, 64, 1, 16384, "gelu", False),
    ModelShape("megablocks-dmoe-large", 1536, 6144, 64, 1, 16384, "gelu", False),
    ModelShape("megablocks-dmoe-xl", 2048, 8192, 64, 1, 16384, "gelu", False),
]

MODELS: dict[str, ModelShape] = {s.name: s for s in _SHAPES}
DEFAULT_MODEL = "mixtral-8x7b"


def model(name: str) -> ModelShape:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"model={name!r}: expected one of {', '.join(MODELS)}") from None
