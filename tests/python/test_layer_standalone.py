"""The reference layer on its own (initialised weights, float64 throughout, gradcheck) and
dMoE.from_megablocks with the whole of MegaBlocks' Arguments."""

import functools
import warnings

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import moejit  # noqa: E402


def test_reference_moe_built_directly_has_initialised_weights():
    torch.manual_seed(0)
    ref = moejit.ReferenceMoE(16, 8, 4, 2, glu=True)
    for name, p in ref.named_parameters():
        assert torch.isfinite(p).all(), name
        assert 0.005 < p.std().item() < 0.05, name   # N(0, 0.02), as dMoE's
    y = ref(torch.randn(5, 16))
    assert torch.isfinite(y).all() and y.abs().sum() > 0


@pytest.mark.parametrize("glu,normalize", [(False, None), (True, 1.0)])
def test_reference_moe_in_float64_is_float64_throughout_and_passes_gradcheck(glu, normalize):
    torch.manual_seed(1)
    ref = moejit.ReferenceMoE(4, 2, 3, 2, activation="silu", glu=glu, bias=True, normalize_expert_weights=normalize,
                              dtype=torch.float64)
    x = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    ref.train()
    y = ref(x)
    assert y.dtype == torch.float64 and ref.load_balancing_loss.dtype == torch.float64
    scores, weights, _ = moejit.layer.dmoe.router_probabilities(ref.router(x), 2, None)
    assert scores.dtype == torch.float64 and weights.dtype == torch.float64
    ref.eval()   # the routing is piecewise constant: gradcheck's small steps keep it
    params = [p for p in ref.parameters()]

    def f(x, *values):
        replaced = dict(zip([n for n, _ in ref.named_parameters()], values))
        return torch.func.functional_call(ref, replaced, (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


def _megablocks_arguments():
    """vars() of megablocks.layers.arguments.Arguments with its defaults (MegaBlocks need
    not be installed: these are its field names and default values)."""
    return dict(hidden_size=64, ffn_hidden_size=128, num_layers=1, bias=True, return_bias=True,
                activation_fn=functools.partial(F.gelu, approximate="tanh"), moe_num_experts=4, moe_top_k=2,
                moe_capacity_factor=1, moe_normalize_expert_weights=None, moe_loss_weight=0.1, moe_jitter_eps=None,
                moe_lbl_in_fp32=False, moe_expert_model_parallelism=False, expert_parallel_group=None,
                moe_weight_parallelism=False, weight_parallel_group=None, pipeline_model_parallel_size=1,
                num_layers_per_virtual_pipeline_stage=None, memory_optimized_mlp=False, mlp_type="glu",
                mlp_impl="sparse", quantize_inputs_num_bits=-1, quantize_rematerialize_num_bits=-1,
                quantize_scatter_num_bits=-1, fp16=True, bf16=False, device="meta",
                init_method=functools.partial(torch.nn.init.normal_, mean=0.0, std=0.02),
                output_layer_init_method=functools.partial(torch.nn.init.normal_, mean=0.0, std=0.02),
                uniform_expert_assignment=False)


def test_from_megablocks_takes_all_of_megablocks_arguments_and_names_what_it_ignores():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer = moejit.dMoE.from_megablocks(**_megablocks_arguments())
    ours = [w for w in caught if issubclass(w.category, moejit.MoejitWarning)]
    assert len(ours) == 1
    named = set(str(ours[0].message).split(" ignores ", 1)[1].split(":", 1)[0].split(", "))
    assert named == {"num_layers", "return_bias", "moe_capacity_factor", "moe_lbl_in_fp32", "moe_weight_parallelism",
                     "weight_parallel_group", "pipeline_model_parallel_size", "num_layers_per_virtual_pipeline_stage",
                     "memory_optimized_mlp", "mlp_impl", "quantize_inputs_num_bits",
                     "quantize_rematerialize_num_bits", "quantize_scatter_num_bits", "init_method",
                     "output_layer_init_method", "uniform_expert_assignment"}
    assert (layer.hidden_size, layer.ffn_hidden_size, layer.num_experts, layer.top_k) == (64, 128, 4, 2)
    assert layer.glu and layer.activation == "gelu" and layer.bias is not None
    assert layer.w1.dtype == torch.float16


def test_from_megablocks_maps_activation_functions():
    args = dict(_megablocks_arguments(), activation_fn=F.silu, mlp_type="mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert moejit.dMoE.from_megablocks(**args).activation == "silu"
        with pytest.raises(ValueError, match="activation_fn="):
            moejit.dMoE.from_megablocks(**dict(args, activation_fn=torch.tanh))
    # The overlapping names alone: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        moejit.dMoE.from_megablocks(hidden_size=64, ffn_hidden_size=128, moe_num_experts=4, device="meta")
