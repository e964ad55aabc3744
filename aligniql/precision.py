"""Which float precision a device runs fast: ``auto`` means bf16 where the hardware multiplies bf16 natively."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` has native bf16 matmuls: AMX tiles or AVX512-BF16 on a CPU (oneDNN then runs bf16
    GEMMs 2-4x faster than fp32; without them bf16 is emulated and slower), bf16 support on a CUDA GPU."""
    device = torch.device(device)
    if device.type == "cuda":  # Ampere and newer; older GPUs only emulate bf16 (slower than fp32)
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
        return any(bool(check()) for check in checks if check is not None)
    return False


def cpu_features() -> dict[str, bool]:
    """The CPU's bf16-relevant features as torch sees them (benchmarks record them next to each figure)."""
    cpu = getattr(torch, "cpu", None)
    names = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported",
             "avx512": "_is_avx512_supported", "avx2": "_is_avx2_supported"}
    return {key: bool(getattr(cpu, fn)()) for key, fn in names.items() if hasattr(cpu, fn)}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s, else what ``platform`` knows): which of the machine class's CPUs
    a speed figure or a training run comes from, as they differ in what bf16 gains (none at all without
    AVX512-BF16 or AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def emulation_warning(precision: str, device: torch.device | str) -> str | None:
    """Why an explicitly chosen ``bf16`` will be slow on ``device`` (``None`` when it will not be): without native
    bf16 matmuls the kernels emulate it, measured 60x slower than fp32 for a 2048x256 matmul and 5-7x slower for
    ``act()`` on an AVX2-only AMD EPYC (benchmarks/README.md)."""
    if precision != "bf16" or native_bf16(device):
        return None
    device = torch.device(device)
    needs = "compute capability 8.0 or newer" if device.type == "cuda" else "AVX512-BF16 or AMX"
    return (f"bf16 on {device.type} {cpu_name() if device.type == 'cpu' else torch.cuda.get_device_name(device)} "
            f"is emulated (native bf16 matmuls need {needs}) and runs several times slower than fp32 here; "
            f"'auto' picks the fast precision of each machine")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``fp32``/``bf16`` as given; ``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision
