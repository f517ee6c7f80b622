"""The dropless MoE layer, its plain-PyTorch reference, and its expert-parallel exchange."""
